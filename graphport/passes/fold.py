"""Constant folding, including shape arithmetic over symbolic dimensions.

Every node whose inputs are all known is evaluated now and disappears from the graph. Shape vectors may be
partially known (`[batch, 1280]`), so the numpy kernels below accept object arrays holding `Sym` entries; other ops
with plain constant inputs are evaluated by ONNX's own reference evaluator. A node that cannot be decided at
conversion time simply stays and runs in TF: folding is an optimisation, never a source of wrong answers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import helper
from onnx.reference import ReferenceEvaluator

from graphport.ir.attrs import constant_of_shape_value
from graphport.ir.graph import Graph, Node, PassResult
from graphport.ir.op_registry import OpRegistry
from graphport.ir.symbolic import Relation, Sym, Undecidable, is_symbolic, normalize, relation
from graphport.ir.to_onnx import encode_attrs
from graphport.passes.infer import refine_shapes

MAX_FOLDED_ELEMENTS = 1 << 22
NONDETERMINISTIC = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial",
                    "Bernoulli", "Dropout"}

Kernel = Callable[[Node, list, int], list]
FOLD_KERNELS: OpRegistry[Kernel] = OpRegistry("fold kernel")  # what ONNX's reference cannot do over symbols
kernel = FOLD_KERNELS.register


def _axes(node: Node, args: list) -> list[int] | None:
    """Axes from the attribute (Squeeze/Unsqueeze before opset 13) or from the optional second input (from 13 on).

    The checker admits only the form the model's opset defines, so whichever is given is the one to read."""
    if "axes" in node.attrs:
        return node.attrs["axes"]
    return None if len(args) < 2 or args[1] is None else [int(a) for a in np.asarray(args[1]).ravel()]


@kernel("Identity")
def _identity(node, args, opset):
    return [args[0]]


@kernel("Gather")
def _gather(node, args, opset):
    data, idx = args
    idx = np.asarray(idx).astype(np.int64)
    axis = node.attrs["axis"] % data.ndim
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return [np.take(data, idx, axis=axis)]


@kernel("Concat")
def _concat(node, args, opset):
    arrays = [a for a in args if a is not None]
    if any(a.dtype == object for a in arrays):
        arrays = [a.astype(object) for a in arrays]
    return [np.concatenate(arrays, axis=node.attrs["axis"])]


@kernel("Unsqueeze")
def _unsqueeze(node, args, opset):
    out = args[0]
    axes = _axes(node, args)
    rank = out.ndim + len(axes)
    for a in sorted(x % rank for x in axes):
        out = np.expand_dims(out, a)
    return [out]


@kernel("Squeeze")
def _squeeze(node, args, opset):
    axes = _axes(node, args)
    return [np.squeeze(args[0], axis=None if axes is None else tuple(a % args[0].ndim for a in axes))]


@kernel("Slice")
def _slice_1(node, args, opset):
    """Slice-1: starts, ends and axes are attributes; no steps."""
    starts, ends = node.attrs["starts"], node.attrs["ends"]
    return [_sliced(args[0], starts, ends, node.attrs.get("axes", list(range(len(starts)))), [1] * len(starts))]


@kernel("Slice", since=10)
def _slice(node, args, opset):
    starts, ends = [int(v) for v in args[1]], [int(v) for v in args[2]]
    axes = [int(v) for v in args[3]] if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = [int(v) for v in args[4]] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    return [_sliced(args[0], starts, ends, axes, steps)]


def _sliced(data, starts: list[int], ends: list[int], axes: list[int], steps: list[int]):
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a % data.ndim] = slice(s, None if (st < 0 and e < -data.shape[a]) else e, st)
    return data[tuple(index)]


@kernel("Reshape")
def _reshape(node, args, opset):
    data, shape = args[0], [int(v) for v in args[1]]
    if not node.attrs.get("allowzero"):  # an attribute from opset 14 on
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [data.reshape(shape)]


@kernel("Transpose")
def _transpose(node, args, opset):
    return [np.transpose(args[0], node.attrs.get("perm"))]


@kernel("Cast")
def _cast(node, args, opset):
    to = helper.tensor_dtype_to_np_dtype(node.attrs["to"])
    if args[0].dtype == object:
        if to.kind not in "iuf":
            raise Undecidable("cast of a symbolic value to a non-numeric type")
        return [args[0]]
    return [args[0].astype(to)]


def _elementwise(fn: Callable) -> Kernel:
    def k(node, args, opset):
        if not any(a.dtype == object for a in args):
            raise Undecidable("plain constants go to the reference evaluator")
        return [np.frompyfunc(fn, len(args), 1)(*args)]
    return k


def _int_div(a, b):
    if isinstance(a, Sym) or isinstance(b, Sym):
        if isinstance(b, Sym) or b < 0:
            raise Undecidable("division by a symbol")
        return a // b  # symbols are positive, so floor == truncation
    return int(a / b) if float(a).is_integer() and float(b).is_integer() else a / b


def _equal(a, b) -> bool:
    """Equal folds only when decided: `==` on a `Sym` means "provably the same", not "provably different"."""
    rel = relation(a, b)
    if rel is Relation.UNKNOWN:
        raise Undecidable(f"whether {a} equals {b}")
    return rel is Relation.EQUAL


for _op, _fn in {
    "Add": _elementwise(lambda a, b: a + b),
    "Sub": _elementwise(lambda a, b: a - b),
    "Mul": _elementwise(lambda a, b: a * b),
    "Div": _elementwise(_int_div),
    "Neg": _elementwise(lambda a: -a),
    "Equal": _elementwise(_equal),
    "Less": _elementwise(lambda a, b: a < b),
    "Greater": _elementwise(lambda a, b: a > b),
    "Max": _elementwise(lambda *a: max(a)),
    "Min": _elementwise(lambda *a: min(a)),
    "Mod": _elementwise(lambda a, b: a % b),
}.items():
    kernel(_op)(_fn)


@kernel("Where")
def _where(node, args, opset):
    cond, a, b = args
    if cond.dtype == object:
        raise Undecidable("symbolic condition")
    return [np.where(cond, a, b)]


@kernel("ConstantOfShape")
def _constant_of_shape(node, args, opset):
    if args[0].dtype == object:
        raise Undecidable("ConstantOfShape with a runtime shape")
    value = constant_of_shape_value(node.attrs)
    return [np.full([int(v) for v in args[0]], value.ravel()[0], dtype=value.dtype)]


def fold_constants(graph: Graph) -> PassResult:
    """Evaluate every node whose result is known at conversion time; return the graph without them."""
    atoms = graph.sym_atoms()
    kept = []
    for node in graph.nodes:
        try:
            results = _evaluate(graph, node, atoms)
        except Exception:  # noqa: BLE001  Undecidable, numpy or reference-evaluator gaps: leave it to TF
            results = None
        if results is None:
            refine_shapes(graph, node)  # inputs folded just now may pin down shapes ONNX inference left open
            kept.append(node)
            continue
        for name, arr in zip(node.outputs, results):
            v = graph.value(name)
            arr = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
            v.const = normalize(arr, v.dtype or np.dtype(np.int64))
            if v.dtype is None:
                v.dtype = v.const.dtype if v.const.dtype != object else np.dtype(np.int64)
            v.shape = v.const.shape
    modified = len(kept) != len(graph.nodes)
    graph.nodes = kept
    return PassResult(graph, modified)


def _evaluate(graph: Graph, node: Node, atoms: dict[str, Sym]) -> list | None:
    if node.domain or node.op_type in NONDETERMINISTIC:  # ONNX's reference evaluates the default domain only
        return None
    if node.op_type == "Constant":
        return [_constant_attr(node)]
    if node.op_type in ("Shape", "Size"):
        return _shape_of(graph, node, atoms)
    args = [graph.const(i) if i else None for i in node.inputs]
    if not node.inputs or any(a is None for i, a in zip(node.inputs, args) if i):
        return None
    fold = FOLD_KERNELS.lookup(node.op_type, graph.opset)
    if any(isinstance(a, np.ndarray) and is_symbolic(a) for a in args) or fold is not None:
        if fold is None:
            return None
        try:
            results = fold(node, args, graph.opset)
            if all(r is not None for r in results):
                return results
        except Undecidable:
            if any(isinstance(a, np.ndarray) and a.dtype == object for a in args):
                return None
        except KeyError:
            return None
    if sum(a.size for a in args if a is not None) > MAX_FOLDED_ELEMENTS:
        return None
    return _reference(graph, node, args)


def _shape_of(graph: Graph, node: Node, atoms: dict[str, Sym]) -> list | None:
    shape = graph.value(node.inputs[0]).shape
    if shape is None or any(d is None for d in shape):
        return None
    dims = np.array([atoms[d] if isinstance(d, str) else d for d in shape], dtype=object)
    if node.op_type == "Size":
        total = 1
        for d in dims:
            total = total * d
        return [np.array(total, dtype=object)]
    return [dims[node.attrs.get("start"):node.attrs.get("end")]]  # start/end exist from opset 15 on


def _constant_attr(node: Node) -> np.ndarray:
    (key, val), = node.attrs.items()
    if key in ("value", "sparse_value"):
        return np.asarray(val)
    dtypes = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
              "value_ints": np.int64}
    if key in dtypes:
        return np.array(val, dtype=dtypes[key])
    return np.array(val, dtype=object)  # value_string(s), already decoded to str


def _reference(graph: Graph, node: Node, args: list) -> list | None:
    """Run one node through onnx's reference evaluator, at the model's opset."""
    names = [f"in{i}" if name else "" for i, name in enumerate(node.inputs)]
    proto = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.outputs))],
                             **encode_attrs(node.attrs))
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), None)
              for n, a in zip(names, args) if n]
    outputs = [helper.make_empty_tensor_value_info(o) for o in proto.output]
    model = helper.make_model(helper.make_graph([proto], "fold", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", graph.opset)])
    feeds = {n: a for n, a in zip(names, args) if n}
    results = ReferenceEvaluator(model).run(None, feeds)
    if any(np.asarray(r).size > MAX_FOLDED_ELEMENTS for r in results):
        return None
    return [np.asarray(r) for r in results]

