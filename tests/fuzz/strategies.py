"""Hypothesis strategies for random small ONNX graphs built only from ops graphport claims to convert.

A graph grows from one or two float inputs whose batch axis is the symbol "N". Each step picks an op and attribute
values that are valid for the shape of a tensor already in the graph (shapes are tracked here, with "N" marking the
batch axis), so that every drawn model passes the ONNX checker and runs in ONNX Runtime. Three families weight the
ops differently: elementwise with broadcasting, shape-op chains (Shape/Gather/Concat/Reshape...), and NCHW conv/pool
stacks mixed with reshapes and transposes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

B = "N"  # the batch symbol
OPSETS = (13, 17, 18, 21)

UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Exp", "Softplus", "Softsign", "Erf", "Floor", "Ceil", "Sign",
         "Sin", "Cos", "Atan", "Sqrt", "Log", "Reciprocal", "HardSwish", "Mish", "Identity", "Round", "IsNaN"]
UNARY_ATTRS = {"Elu": "alpha", "LeakyRelu": "alpha", "Celu": "alpha", "ThresholdedRelu": "alpha"}
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Greater", "Less", "Equal"]
SINCE = {"HardSwish": 14, "Mish": 18, "Gelu": 20, "Celu": 12, "LayerNormalization": 17}
REDUCERS = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceSumSquare", "ReduceLogSumExp"]


@dataclass
class T:
    name: str
    shape: tuple  # ints and B


@dataclass
class Builder:
    opset: int
    inputs: list = field(default_factory=list)
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    pool: list = field(default_factory=list)
    n: int = 0

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def const(self, arr: np.ndarray, as_node: bool = False) -> str:
        name = self.fresh("c")
        tensor = numpy_helper.from_array(np.asarray(arr), name)
        if as_node:
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        else:
            self.inits.append(tensor)
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, np.int64))

    def node(self, op: str, inputs: list[str], shape: tuple | None, n_out: int = 1, **attrs) -> T | list[T]:
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.fresh("n_" + op), **attrs))
        if n_out > 1:
            return outs
        t = T(outs[0], shape)
        if shape:  # rank-0 and untracked values are never fed to another step
            self.pool.append(t)
        return t

    def model(self, outputs: list[T]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "fuzz", self.inputs, [], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 10)  # what the installed ORT reads
        onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)  # catches generator slips
        for t in outputs:  # every tracked value is float32
            model.graph.output.append(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.shape)))
        return model


def _prod(dims) -> int:
    return int(np.prod([d for d in dims if d != B], dtype=np.int64))


def _floats(draw, shape, lo=-2.0, hi=2.0, away_from_zero=False) -> np.ndarray:
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)
    if away_from_zero:
        arr = np.where(np.abs(arr) < 0.25, np.float32(0.5), arr).astype(np.float32)
    return arr


def _broadcast_shape(draw, shape) -> tuple:
    """A shape that broadcasts against `shape` without growing it: a suffix of its dims, each kept or set to 1."""
    k = draw(st.integers(0, len(shape)))
    tail = shape[len(shape) - k:]
    return tuple(d if d != B and draw(st.booleans()) else 1 for d in tail)


def _axis(draw, shape, allow_batch=False, negative=True) -> int | None:
    axes = [i for i, d in enumerate(shape) if allow_batch or d != B]
    if not axes:
        return None
    a = draw(st.sampled_from(axes))
    return a - len(shape) if negative and draw(st.booleans()) else a


# ---- op appliers: each returns a new tensor, or None when the op does not fit the tensor's shape ----

def unary(draw, b: Builder, t: T):
    op = draw(st.sampled_from(UNARY + list(UNARY_ATTRS) + ["HardSigmoid", "Selu", "Clip", "Gelu", "Cast16"]))
    if b.opset < SINCE.get(op, 1):
        return None
    if op in UNARY_ATTRS:
        return b.node(op, [t.name], t.shape, **{UNARY_ATTRS[op]: draw(st.floats(0.05, 2.0))})
    if op == "HardSigmoid":
        return b.node(op, [t.name], t.shape, alpha=draw(st.floats(0.05, 1)),
                      beta=draw(st.floats(0, 1)))
    if op == "Selu":
        return b.node(op, [t.name], t.shape)
    if op == "Clip":
        lo = draw(st.floats(-2, 0))
        hi = lo + draw(st.floats(0, 3))
        ins = [t.name, b.const(np.float32(lo)), b.const(np.float32(hi))]
        return b.node(op, ins[:draw(st.integers(1, 3))], t.shape)
    if op == "Gelu":
        return b.node(op, [t.name], t.shape, approximate=draw(st.sampled_from(["none", "tanh"])))
    if op == "Cast16":  # a round trip through a narrower or wider float
        to = draw(st.sampled_from([TensorProto.FLOAT16, TensorProto.DOUBLE]))
        mid = b.node("Cast", [t.name], None, to=to)
        return b.node("Cast", [mid.name], t.shape, to=TensorProto.FLOAT)
    if op == "IsNaN":
        mask = b.node(op, [t.name], None)
        return b.node("Cast", [mask.name], t.shape, to=TensorProto.FLOAT)
    return b.node(op, [t.name], t.shape)


def binary(draw, b: Builder, t: T):
    op = draw(st.sampled_from(BINARY))
    others = [o for o in b.pool if _broadcasts(o.shape, t.shape)]
    use_pool = others and draw(st.booleans())
    if use_pool:
        other = draw(st.sampled_from(others)).name
    else:
        other = b.const(_floats(draw, _broadcast_shape(draw, t.shape), away_from_zero=op in ("Div", "Pow")))
    if op == "Pow":  # exponents that keep the result finite and comparable
        other = b.const(np.float32(draw(st.sampled_from([2.0, 3.0, 0.5, -1.0]))))
    ins = [t.name, other] if op == "Pow" or draw(st.booleans()) else [other, t.name]
    if op in ("Greater", "Less", "Equal"):
        mask = b.node(op, ins, None)
        if draw(st.booleans()):
            return b.node("Cast", [mask.name], t.shape, to=TensorProto.FLOAT)
        # no magnitudes near float32's smallest normal: an average of such values is subnormal, which TF's CPU
        # kernels flush to zero and ORT keeps, so a later division gives inf in one and 1e38 in the other
        zero = b.const(np.float32(draw(st.floats(-1, 1).filter(lambda v: v == 0 or abs(v) >= 1e-6))))
        return b.node("Where", [mask.name, t.name, zero], t.shape)
    return b.node(op, ins, t.shape)


def _broadcasts(small, big) -> bool:
    if len(small) > len(big):
        return False
    return all(s == 1 or s == g for s, g in zip(small[::-1], big[::-1]))


def transpose(draw, b: Builder, t: T):
    if len(t.shape) < 2:
        return None
    perm = draw(st.permutations(range(len(t.shape))))
    return b.node("Transpose", [t.name], tuple(t.shape[p] for p in perm), perm=list(perm))


def unsqueeze(draw, b: Builder, t: T):
    if len(t.shape) >= 5:
        return None
    a = draw(st.integers(-len(t.shape) - 1, len(t.shape)))
    shape = list(t.shape)
    shape.insert(a % (len(t.shape) + 1), 1)
    return b.node("Unsqueeze", [t.name, b.ints([a])], tuple(shape))


def squeeze(draw, b: Builder, t: T):
    ones = [i for i, d in enumerate(t.shape) if d == 1]
    if not ones:
        return None
    axes = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
    shape = tuple(d for i, d in enumerate(t.shape) if i not in axes)
    return b.node("Squeeze", [t.name, b.ints(axes)], shape)  # without axes, a batch of 1 would go too


def _factor(draw, total: int, parts: int) -> list[int]:
    if parts == 0:
        return []
    dims = []
    for _ in range(parts - 1):
        divs = [d for d in range(1, total + 1) if total % d == 0]
        d = draw(st.sampled_from(divs))
        dims.append(d)
        total //= d
    return dims + [total]


def reshape(draw, b: Builder, t: T):
    """Regroup the non-batch dims; the batch is written as 0 (copy), -1 (infer) or read from Shape at run time."""
    if B not in t.shape:
        rank = draw(st.integers(1, 4))
        dims = _factor(draw, _prod(t.shape), rank)
        target = list(dims)
        if draw(st.booleans()):
            target[draw(st.integers(0, rank - 1))] = -1
        return b.node("Reshape", [t.name, b.ints(target)], tuple(dims))
    bi = t.shape.index(B)
    rank = draw(st.integers(max(1 if _prod(t.shape) == 1 else 2, bi + 1), 5))
    dims = _factor(draw, _prod(t.shape), rank - 1)
    pos = draw(st.integers(0, rank - 1))
    shape = tuple(dims[:pos]) + (B,) + tuple(dims[pos:])
    how = draw(st.sampled_from(["zero", "infer", "shape", "shape_slice"]))
    if how == "zero" and pos != bi:
        how = "infer"
    if how in ("zero", "infer"):
        target = list(dims[:pos]) + [0 if how == "zero" else -1] + list(dims[pos:])
        if how == "zero" and dims and draw(st.booleans()):  # -1 on another axis besides the copied batch
            j = draw(st.sampled_from([i for i in range(rank) if i != pos]))
            target[j] = -1
        return b.node("Reshape", [t.name, b.ints(target)], shape)
    return b.node("Reshape", [t.name, _batch_shape(draw, b, t, bi, dims, pos)], shape)


def _batch_shape(draw, b: Builder, t: T, bi: int, dims: list[int], pos: int) -> str:
    """Shape -> Gather/Slice -> (Unsqueeze) -> Concat: the usual exporter pattern for a dynamic batch."""
    shape_of = b.node("Shape", [t.name], None)
    if draw(st.booleans()):
        idx = b.const(np.int64(bi if draw(st.booleans()) else bi - len(t.shape)))
        scalar = b.node("Gather", [shape_of.name, idx], None, axis=0)
        batch = b.node("Unsqueeze", [scalar.name, b.ints([0])], None)
    elif b.opset >= 15 and draw(st.booleans()):
        batch = b.node("Shape", [t.name], None, start=bi, end=bi + 1)
    else:
        batch = b.node("Slice", [shape_of.name, b.ints([bi]), b.ints([bi + 1])], None)
    parts = []
    if pos:
        parts.append(b.ints(dims[:pos]))
    parts.append(batch.name)
    if dims[pos:]:
        parts.append(b.ints(dims[pos:]))
    if len(parts) == 1:
        return batch.name
    return b.node("Concat", parts, None, axis=0).name


def flatten(draw, b: Builder, t: T):
    if B not in t.shape:
        return None
    bi = t.shape.index(B)
    # The batch must stay a whole axis: everything on its side of the split has size 1.
    ok = [a for a in range(len(t.shape) + 1)
          if (a > bi and _prod(t.shape[:a]) == 1) or (a <= bi and _prod(t.shape[a:]) == 1 and a > 0)]
    if not ok:
        return None
    a = draw(st.sampled_from(ok))
    shape = (B, _prod(t.shape[a:])) if a > bi else (_prod(t.shape[:a]), B)
    return b.node("Flatten", [t.name], shape, axis=a if a == len(t.shape) or draw(st.booleans()) else a - len(t.shape))


def concat(draw, b: Builder, t: T):
    a = _axis(draw, t.shape)
    if a is None:
        return None
    ax = a % len(t.shape)
    mates = [o for o in b.pool if len(o.shape) == len(t.shape) and o.shape[ax] != B
             and all(i == ax or o.shape[i] == t.shape[i] for i in range(len(t.shape)))]
    chosen = [t] + draw(st.lists(st.sampled_from(mates), min_size=1, max_size=2))
    shape = list(t.shape)
    shape[ax] = sum(o.shape[ax] for o in chosen)
    return b.node("Concat", [o.name for o in chosen], tuple(shape), axis=a)


def slice_(draw, b: Builder, t: T):
    a = _axis(draw, t.shape, negative=False)
    if a is None:
        return None
    n = t.shape[a]
    step = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
    start = draw(st.integers(-n - 2, n + 2))
    end = draw(st.one_of(st.integers(-n - 2, n + 2), st.sampled_from([2**63 - 1, -(2**63)])))
    out = len(range(*slice(start, end, step).indices(n)))
    if out == 0:
        return None
    shape = list(t.shape)
    shape[a] = out
    axis = a - len(t.shape) if draw(st.booleans()) else a
    ins = [t.name, b.ints([start]), b.ints([end]), b.ints([axis])]
    if step != 1 or draw(st.booleans()):
        ins.append(b.ints([step]))
    return b.node("Slice", ins, tuple(shape))


def gather(draw, b: Builder, t: T):
    a = _axis(draw, t.shape, negative=False)
    if a is None:
        return None
    n = t.shape[a]
    idx_shape = draw(st.sampled_from([(), (1,), (2,), (2, 2)]))
    idx = np.asarray(draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(idx_shape)),
                                   max_size=int(np.prod(idx_shape)))), np.int64).reshape(idx_shape)
    shape = t.shape[:a] + idx_shape + t.shape[a + 1:]
    if not shape:
        return None
    return b.node("Gather", [t.name, b.const(idx)], shape, axis=a if a == len(t.shape) or draw(st.booleans()) else a - len(t.shape))


def split(draw, b: Builder, t: T):
    a = _axis(draw, t.shape, negative=False)
    if a is None or t.shape[a] < 2:
        return None
    parts = _split_sizes(draw, t.shape[a])
    outs = b.node("Split", [t.name, b.ints(parts)], None, n_out=len(parts), axis=a)
    made = []
    for name, p in zip(outs, parts):
        shape = list(t.shape)
        shape[a] = p
        made.append(T(name, tuple(shape)))
    b.pool.extend(made)
    return draw(st.sampled_from(made))


def _split_sizes(draw, n: int) -> list[int]:
    k = draw(st.integers(2, min(n, 3)))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), min_size=k - 1, max_size=k - 1, unique=True)))
    return [e - s for s, e in zip([0] + cuts, cuts + [n])]


def reduce(draw, b: Builder, t: T):
    op = draw(st.sampled_from(REDUCERS))
    axes = draw(st.lists(st.integers(0, len(t.shape) - 1), min_size=1, max_size=len(t.shape), unique=True))
    keep = draw(st.booleans())
    shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape)) if keep else \
        tuple(d for i, d in enumerate(t.shape) if i not in axes)
    if not shape:
        return None
    axes = [a - len(t.shape) if draw(st.booleans()) else a for a in axes]
    if op == "ReduceSum" and b.opset >= 13 or b.opset >= 18:
        return b.node(op, [t.name, b.ints(axes)], shape, keepdims=int(keep))
    return b.node(op, [t.name], shape, axes=axes, keepdims=int(keep))


def softmax(draw, b: Builder, t: T):
    op = draw(st.sampled_from(["Softmax", "LogSoftmax"]))
    # A NaN or infinite input (Sqrt of a negative, Exp overflowing) makes ORT's exp(x - max) NaN everywhere, and
    # oneDNN's softmax kernel NaN only in places: a host difference on garbage, not conversion. So non-finite
    # values (those where x - x is NaN) become 0 first.
    bad = b.node("IsNaN", [b.node("Sub", [t.name, t.name], None).name], None)
    clean = b.node("Where", [bad.name, b.const(np.float32(0)), t.name], None)
    return b.node(op, [clean.name], t.shape, axis=draw(st.integers(-len(t.shape), len(t.shape) - 1)))


def matmul(draw, b: Builder, t: T):
    if t.shape[-1] == B:
        return None
    k = draw(st.integers(1, 6))
    if len(t.shape) == 2 and draw(st.booleans()):  # Gemm with a broadcast bias
        trans_b = draw(st.booleans())
        w = _floats(draw, (k, t.shape[1]) if trans_b else (t.shape[1], k))
        ins = [t.name, b.const(w)]
        if draw(st.booleans()):
            ins.append(b.const(_floats(draw, draw(st.sampled_from([(k,), (1, k), (1,)])))))
        return b.node("Gemm", ins, (t.shape[0], k), transB=int(trans_b), alpha=draw(st.floats(0.5, 2)),
                      beta=draw(st.floats(0.5, 2)))
    lead = _broadcast_shape(draw, t.shape[:-2]) if len(t.shape) > 2 else ()
    w = b.const(_floats(draw, lead + (t.shape[-1], k)))
    shape = t.shape[:-1] + (k,) if len(t.shape) >= 2 + len(lead) else None
    if len(t.shape) == 1:
        shape = (k,)
    return b.node("MatMul", [t.name, w], shape)


def _nchw(t: T) -> bool:
    return len(t.shape) in (3, 4) and t.shape[0] == B and all(isinstance(d, int) for d in t.shape[1:])


def conv(draw, b: Builder, t: T):
    if not _nchw(t):
        return None
    c, spatial = t.shape[1], t.shape[2:]
    nd = len(spatial)
    group = draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]))
    m = group * draw(st.integers(1, 3))
    k = [draw(st.integers(1, 3)) for _ in spatial]
    s = [draw(st.integers(1, 2)) for _ in spatial]
    d = [draw(st.integers(1, 2)) for _ in spatial]
    attrs, out = _window(draw, spatial, k, s, d, allow_same=d == [1] * nd)  # ORT: no dilation with SAME
    if out is None:
        return None
    ins = [t.name, b.const(_floats(draw, (m, c // group, *k)))]
    if draw(st.booleans()):
        ins.append(b.const(_floats(draw, (m,))))
    return b.node("Conv", ins, (B, m, *out), group=group, strides=s, dilations=d, kernel_shape=k, **attrs)


def _window(draw, spatial, k, s, d, allow_same, ceil=False):
    """Padding attributes and the output size, or None for an empty output."""
    nd = len(spatial)
    eff = [(ki - 1) * di + 1 for ki, di in zip(k, d)]
    mode = draw(st.sampled_from(["pads", "pads", "SAME_UPPER", "SAME_LOWER", "VALID"] if allow_same else ["pads"]))
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        out = [math.ceil(n / si) for n, si in zip(spatial, s)]
        if all((o - 1) * si + e >= n for o, si, e, n in zip(out, s, eff, spatial)):  # ORT: no negative SAME pads
            return {"auto_pad": mode}, out
        mode = "pads"
    if mode == "VALID":
        out = [(n - e) // si + 1 for n, e, si in zip(spatial, eff, s)]
        return ({"auto_pad": mode}, out) if min(out) >= 1 else ({}, None)
    pads = [draw(st.integers(0, ki - 1)) for ki in k] + [draw(st.integers(0, ki - 1)) for ki in k]
    rnd = math.ceil if ceil else math.floor
    out = [rnd((n + pads[i] + pads[i + nd] - eff[i]) / s[i]) + 1 for i, n in enumerate(spatial)]
    # ORT drops a last ceil-mode window that starts in the right padding, ONNX shape inference keeps it: avoid.
    if ceil and any((o - 1) * s[i] >= spatial[i] + pads[i] for i, o in enumerate(out)):
        return {}, None
    if min(out) < 1:
        return {}, None
    return ({"pads": pads} if any(pads) or draw(st.booleans()) else {}), out


def pool(draw, b: Builder, t: T):
    if not _nchw(t):
        return None
    spatial = t.shape[2:]
    op = draw(st.sampled_from(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"]))
    if op.startswith("Global"):
        return b.node(op, [t.name], (B, t.shape[1]) + (1,) * len(spatial))
    k = [draw(st.integers(1, min(3, n + 1))) for n in spatial]
    s = [draw(st.integers(1, 2)) for _ in spatial]
    d = [draw(st.integers(1, 2)) for _ in spatial] if op == "MaxPool" and draw(st.booleans()) else [1] * len(k)
    ceil = draw(st.booleans())
    attrs, out = _window(draw, spatial, k, s, d, allow_same=not ceil and d == [1] * len(k), ceil=ceil)
    if out is None:
        return None
    if ceil:
        attrs["ceil_mode"] = 1
    if op == "MaxPool" and d != [1] * len(k):
        attrs["dilations"] = d
    if op == "AveragePool" and draw(st.booleans()):
        attrs["count_include_pad"] = 1
    return b.node(op, [t.name], (B, t.shape[1], *out), kernel_shape=k, strides=s, **attrs)


def norm(draw, b: Builder, t: T):
    op = draw(st.sampled_from(["BatchNormalization", "InstanceNormalization", "LayerNormalization"]))
    if b.opset < SINCE.get(op, 1):
        return None
    if op == "LayerNormalization":
        axis = draw(st.integers(-len(t.shape), len(t.shape) - 1))
        tail = t.shape[axis:]
        if B in tail:
            return None
        return b.node(op, [t.name, b.const(_floats(draw, tail)), b.const(_floats(draw, tail))], t.shape, axis=axis,
                      epsilon=draw(st.sampled_from([1e-5, 1e-3])))
    if len(t.shape) < 3 or t.shape[0] != B or t.shape[1] == B:
        return None
    c = t.shape[1]
    if op == "InstanceNormalization":
        return b.node(op, [t.name, b.const(_floats(draw, (c,))), b.const(_floats(draw, (c,)))], t.shape)
    var = b.const(_floats(draw, (c,), 0.1, 2.0))
    return b.node(op, [t.name, b.const(_floats(draw, (c,))), b.const(_floats(draw, (c,))),
                       b.const(_floats(draw, (c,))), var], t.shape, epsilon=1e-5)


def pad(draw, b: Builder, t: T):
    mode = draw(st.sampled_from(["constant", "reflect", "edge"]))
    def amount(d):  # reflect needs pads < the axis length
        return 0 if d == B else draw(st.integers(0, 2 if mode != "reflect" else max(0, min(2, d - 1))))

    pads = [amount(d) for d in t.shape] + [amount(d) for d in t.shape]
    r = len(t.shape)
    shape = tuple(d if d == B else d + pads[i] + pads[i + r] for i, d in enumerate(t.shape))
    ins = [t.name, b.ints(pads)]
    if mode == "constant" and draw(st.booleans()):
        ins.append(b.const(np.float32(draw(st.floats(-1, 1)))))
    return b.node("Pad", ins, shape, mode=mode)


def expand_tile(draw, b: Builder, t: T):
    if draw(st.booleans()):
        reps = [1 if d == B else draw(st.integers(1, 2)) for d in t.shape]
        shape = tuple(d if d == B else d * r for d, r in zip(t.shape, reps))
        return b.node("Tile", [t.name, b.ints(reps)], shape)
    ones = [i for i, d in enumerate(t.shape) if d == 1]
    if not ones:
        return None
    target = [1 if d == B else (draw(st.integers(1, 3)) if d == 1 else d) for d in t.shape]
    if draw(st.booleans()):
        target = [draw(st.integers(1, 2))] + target
    shape = tuple(d if d == B else max(d, tt) for d, tt in zip(t.shape, target[len(target) - len(t.shape):]))
    shape = tuple(target[:len(target) - len(t.shape)]) + shape
    return b.node("Expand", [t.name, b.ints(target)], shape)


def argmax(draw, b: Builder, t: T):
    op = draw(st.sampled_from(["ArgMax", "ArgMin"]))
    axes = [i for i, d in enumerate(t.shape) if d != B]
    if not axes:
        return None
    a = draw(st.sampled_from(axes))
    keep = draw(st.booleans())
    shape = tuple(1 if i == a else d for i, d in enumerate(t.shape)) if keep else t.shape[:a] + t.shape[a + 1:]
    if not shape:
        return None
    # ONNX leaves the arg of a NaN unspecified (ORT and TF differ), so NaNs from Log/Sqrt/Pow become 0 first.
    nan = b.node("IsNaN", [t.name], None)
    clean = b.node("Where", [nan.name, b.const(np.float32(0)), t.name], None)
    # Exact ties (Floor/Round/Sign outputs) are ties in ORT but may be 1-ulp apart in TF, whose vectorised Sigmoid
    # differs from its scalar tail by an ulp: which index wins is then float noise, not conversion. A ramp along
    # the axis makes tied values distinct in both.
    ramp = (np.arange(t.shape[a], dtype=np.float32) * np.float32(0.1234567)).reshape(
        [t.shape[a] if i == a else 1 for i in range(len(t.shape))])
    clean = b.node("Add", [clean.name, b.const(ramp)], None)
    idx = b.node(op, [clean.name], None, axis=a, keepdims=int(keep))
    return b.node("Cast", [idx.name], shape, to=TensorProto.FLOAT)


ELEMENTWISE = [unary, unary, binary, binary, binary, softmax, reduce, norm]
SHAPE_OPS = [reshape, reshape, transpose, unsqueeze, squeeze, flatten, concat, slice_, gather, split, expand_tile,
             pad, unary, binary]
CONV_STACK = [conv, conv, pool, norm, transpose, reshape, unary, binary, pad, concat, slice_, matmul, argmax]
FAMILIES = {"elementwise": ELEMENTWISE, "shape": SHAPE_OPS, "conv": CONV_STACK}


@st.composite
def onnx_models(draw, family: str) -> onnx.ModelProto:
    """A valid model of the given family: one or two float inputs with a symbolic batch, 1-6 op steps."""
    b = Builder(opset=draw(st.sampled_from(OPSETS)))
    if family == "conv":
        shape = (B, draw(st.integers(1, 4)), *[draw(st.integers(2, 9)) for _ in range(draw(st.integers(1, 2)))])
    else:
        shape = (B, *[draw(st.integers(1, 5)) for _ in range(draw(st.integers(0, 3)))])
    inputs = [T("x", shape)]
    if draw(st.booleans()):  # a second input that broadcasts against the first, batch included
        other = _broadcast_shape(draw, shape)
        if len(other) == len(shape) and draw(st.booleans()):
            other = (B,) + other[1:]
        inputs.append(T("y", other))
    for i in inputs:
        dims = [d if d != B else B for d in i.shape]
        b.inputs.append(helper.make_tensor_value_info(i.name, TensorProto.FLOAT, dims))
    b.pool.extend(i for i in inputs if i.shape)
    t = inputs[0]
    ops = FAMILIES[family]
    for _ in range(draw(st.integers(1, 6))):
        fn = draw(st.sampled_from(ops))
        src = t if draw(st.integers(0, 3)) else draw(st.sampled_from(b.pool))
        made = fn(draw, b, src)
        if made is not None and made.shape:
            t = made
    outputs = [t]
    extra = [o for o in b.pool if o.name != t.name and o.name not in ("x", "y")]
    if extra and draw(st.booleans()):
        outputs.append(draw(st.sampled_from(extra)))
    if t.name in ("x", "y"):
        outputs = [b.node("Identity", [t.name], t.shape)]
    return b.model(outputs)
