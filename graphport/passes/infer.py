"""Per-node shape refinement with ONNX's own inference functions, fed the constants folding has just found.

ONNX shape inference runs once, before folding, and loses every dim behind a value it cannot compute then (a Pad
whose pads come from `Shape -> Div -> Cast` arithmetic, as in dynamic "same" padding). Once folding has made
such inputs constant, re-inferring the node recovers its output shape, and downstream `Shape` nodes fold too.

Dims may also be `Sym` expressions (`4*batch` after attention's head split). ONNX inference carries them through as
placeholder dim_params; Reshape/Expand/Tile/ConstantOfShape with a symbolic shape input are computed here, since
ONNX cannot read such inputs. Without this, every `Shape` after a multi-head Reshape stays a runtime op.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from graphport.ir.graph import Dim, Graph, Node, canonical
from graphport.ir.symbolic import Sym, Undecidable
from graphport.ir.to_onnx import encode_attrs


def refine_shapes(graph: Graph, node: Node) -> None:
    """Fill unknown output dims (and dtypes) of `node` from its current input shapes and constant inputs."""
    outs = [graph.value(o) for o in node.outputs if o]
    if all(v.shape is not None and None not in v.shape and v.dtype is not None for v in outs):
        return
    try:
        shape = _symbolic_shape(graph, node)
    except (Undecidable, ValueError, TypeError, IndexError, ZeroDivisionError):
        shape = None
    if shape is not None and outs:
        outs[0].shape = _merge(outs[0].shape, [canonical(graph, d) for d in shape])
    syms: dict[str, Sym] = {}
    try:
        inferred = _infer(graph, node, syms)
    except Exception:  # noqa: BLE001  no schema, odd attribute form, inference error: keep what we had
        return
    for v in outs:
        tp = inferred.get(v.name)
        if tp is None or not tp.HasField("tensor_type"):
            continue
        tt = tp.tensor_type
        if v.dtype is None and tt.elem_type:
            v.dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if tt.HasField("shape"):
            v.shape = _merge(v.shape, [_dim(graph, d, syms) for d in tt.shape.dim])


def _sym(graph: Graph, d: Dim, atoms: dict[str, Sym]):
    return atoms[d] if isinstance(d, str) else d


def _symbolic_shape(graph: Graph, node: Node) -> list | None:
    """Output shape of a shape-taking op whose shape input is a partly symbolic constant, or of a Slice of a
    symbolic dim."""
    op = node.op_type
    if op == "Slice":
        return _slice_shape(graph, node)
    if op in WINDOWED:
        return _window_shape(graph, node)
    if op == "Resize":
        return _resize_shape(graph, node)
    k = {"Reshape": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0}.get(op)
    if k is None or len(node.inputs) <= k:
        return None
    target = graph.const(node.inputs[k])
    src = graph.values[node.inputs[0]].shape
    symbolic_src = op == "Reshape" and src is not None and any(isinstance(d, (str, Sym)) for d in src)
    if target is None or (target.dtype != object and not symbolic_src):
        return None
    atoms = graph.sym_atoms()
    vals = list(target.ravel())
    if op == "ConstantOfShape":
        return vals
    if src is None or None in src:
        return None
    src = [_sym(graph, d, atoms) for d in src]
    if op == "Tile":
        return [a * b for a, b in zip(src, vals)]
    if op == "Expand":
        n = max(len(src), len(vals))
        a, b = [1] * (n - len(src)) + src, [1] * (n - len(vals)) + vals
        return [y if _is_one(x) else x if _is_one(y) else x if x is y or _same(x, y) else None for x, y in zip(a, b)]
    if not node.attrs.get("allowzero"):  # an attribute from opset 14 on
        vals = [src[i] if not isinstance(v, Sym) and v == 0 else v for i, v in enumerate(vals)]
    if sum(not isinstance(v, Sym) and v == -1 for v in vals) == 1:
        i = next(i for i, v in enumerate(vals) if not isinstance(v, Sym) and v == -1)
        vals[i] = _divide(_prod(src), _prod(vals[:i] + vals[i + 1:]))
    return vals


LARGE = 2**31  # exporters write INT64_MAX (or INT32_MAX) for "to the end"


def _slice_shape(graph: Graph, node: Node) -> list | None:
    """A unit-step Slice keeps a symbolic dim computable when its bounds count from one end: `x[s:]` has `d - s`
    elements, `x[-k:]` has k, `x[s:-k]` has `d - s - k` (assuming d >= s + k; ONNX's inference gives up on any symbolic dim)."""
    src = graph.values[node.inputs[0]].shape
    if src is None or None in src:
        return None
    if graph.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        args = [graph.const(i) if i else None for i in node.inputs[1:5]] + [None] * 4
        if args[0] is None or args[1] is None or any(a is None for a, i in zip(args[2:4], node.inputs[3:5]) if i):
            return None
        starts, ends = [int(v) for v in args[0]], [int(v) for v in args[1]]
        axes = [int(v) for v in args[2]] if args[2] is not None else list(range(len(starts)))
        steps = [int(v) for v in args[3]] if args[3] is not None else [1] * len(starts)
    atoms = graph.sym_atoms()
    out = [_sym(graph, d, atoms) for d in src]
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= len(out)
        d = out[a]
        if not isinstance(d, Sym):
            out[a] = len(range(*slice(s, e, st).indices(d)))
        elif st != 1 or 0 <= e < LARGE:
            return None
        else:
            first = s if s >= 0 else d + s
            out[a] = (d if e >= LARGE else d + e if e < 0 else e) - first
    return out


WINDOWED = ("Conv", "MaxPool", "AveragePool", "LpPool")


def _window_shape(graph: Graph, node: Node) -> list | None:
    """Conv and pooling over a symbolic length (raw audio samples, mel frames): `(d + pads - span) // stride + 1`,
    or `ceil(d / stride)` for SAME padding, so that the frame count after a strided front end stays computable."""
    src = graph.values[node.inputs[0]].shape
    if src is None or None in src or len(src) < 3:
        return None
    atoms = graph.sym_atoms()
    x = [_sym(graph, d, atoms) for d in src]
    a = node.attrs
    if node.op_type == "Conv":
        w = graph.values[node.inputs[1]].shape
        if w is None or not all(isinstance(d, int) for d in w):
            return None
        kernel, channels = list(a.get("kernel_shape") or w[2:]), w[0]
    else:
        kernel, channels = list(a["kernel_shape"]), x[1]
    n = len(kernel)
    strides, dilations = a.get("strides") or [1] * n, a.get("dilations") or [1] * n
    pads, auto = a.get("pads") or [0] * 2 * n, a.get("auto_pad", "NOTSET")
    out = []
    for i, d in enumerate(x[2:]):
        s, span, end = strides[i], (kernel[i] - 1) * dilations[i] + 1, pads[i + n]
        room = d + (0 if auto == "VALID" else pads[i] + end) - span
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append((d + s - 1) // s)
        elif not a.get("ceil_mode"):
            out.append(room // s + 1)
        elif end + s <= span:  # ceil's last window then always starts inside the input: never dropped
            out.append((room + s - 1) // s + 1)
        else:
            # A last window that would start past the input and its begin pads is dropped (ORT's and torch's rule):
            # min(ceil(room / s) + 1, ceil((d + begin) / s)). Here end + s > span, so the first is never smaller.
            begin = 0 if auto == "VALID" else pads[i]
            out.append((d + begin + s - 1) // s)
    return [x[0], channels, *out]


def _resize_shape(graph: Graph, node: Node) -> list | None:
    """Resize to sizes that fold to symbols (`Concat(Shape(x)[:2], [h, w])` keeps the batch)."""
    sizes = graph.const(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
    src = graph.values[node.inputs[0]].shape
    if sizes is None or sizes.dtype != object or src is None:
        return None
    out = list(src)
    axes = node.attrs.get("axes") or range(len(out))
    for a, d in zip(axes, sizes.ravel()):
        out[a % len(out)] = d
    return out


def _is_one(d) -> bool:
    return not isinstance(d, Sym) and d == 1


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Undecidable:
        return False


def _prod(dims: list):
    total = 1
    for d in dims:
        total = total * d
    return total


def _divide(a, b):
    """Exact a / b for products of dims (`64*batch*T / (16*batch*T)` is 4 even when T is `(samples - 400)//320 + 1`,
    a sum): polynomial long division by leading terms, which leaves no remainder exactly when b divides a."""
    if not isinstance(b, Sym):
        return a // b if not isinstance(a, Sym) else a / b
    order = lambda m: (len(m), sorted(atom.name for atom in m))
    mb = max(b.terms, key=order)
    cb, rest, quotient = b.terms[mb], Sym.lift(a), 0
    for _ in range(64):
        if not isinstance(rest, Sym) and rest == 0:
            return quotient
        rest = Sym.lift(rest)
        ma = max(rest.terms, key=order)
        left = list(ma)
        if rest.terms[ma] % cb or any(atom not in left or left.remove(atom) for atom in mb):
            return None
        step = Sym({tuple(left): rest.terms[ma] // cb})
        quotient, rest = quotient + step, rest - step * b
    return None


def _infer(graph: Graph, node: Node, syms: dict[str, Sym]) -> dict[str, onnx.TypeProto]:
    types, data = {}, {}
    for name in node.inputs:
        if not name:
            continue
        v = graph.values.get(name)
        if v is None or v.dtype is None:
            raise ValueError(f"no type for '{name}'")
        shape = None if v.shape is None else [_placeholder(d, syms) for d in v.shape]
        types[name] = helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), shape)
        if v.const is not None and v.const.dtype != object:
            data[name] = numpy_helper.from_array(v.const, name)
    proto = helper.make_node(node.op_type, node.inputs, node.outputs, domain=node.domain or None,
                             **encode_attrs(node.attrs))
    schema = onnx.defs.get_schema(node.op_type, graph.opset, node.domain)
    return shape_inference.infer_node_outputs(schema, proto, types, data,
                                              opset_imports=[helper.make_opsetid("", graph.opset)])


def _placeholder(d: Dim, syms: dict[str, Sym]) -> int | str | None:
    """A `Sym` dim travels through ONNX inference as a dim_param that `_dim` maps back; equal dims share one name,
    so that ONNX's broadcasting sees them equal."""
    if not isinstance(d, Sym):
        return d
    key = next((k for k, v in syms.items() if repr(v) == repr(d)), f"__gp_sym{len(syms)}")
    syms[key] = d
    return key


def _dim(graph: Graph, d: onnx.TensorShapeProto.Dimension, syms: dict[str, Sym]) -> Dim:
    if d.HasField("dim_value"):
        return d.dim_value
    if d.dim_param in syms:
        return syms[d.dim_param]
    return d.dim_param if d.dim_param in graph.symbols else None


def _merge(old: tuple[Dim, ...] | None, new: list[Dim]) -> tuple[Dim, ...]:
    """Known dims win; a rank disagreement (which ONNX would not produce) keeps the old shape."""
    if old is None:
        return tuple(new)
    if len(old) != len(new):
        return old
    return tuple(o if o is not None else n for o, n in zip(old, new))
