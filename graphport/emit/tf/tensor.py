"""Shape and data-movement ops. Most need the ONNX memory order; Transpose only relabels the layout."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext
from graphport.emit.tf.registry import Decline, op
from graphport.ir.graph import Node
from graphport.ir.symbolic import Sym, is_symbolic

INT32_MAX = 2**31 - 1


def _opt(node: Node, k: int) -> str:
    return node.inputs[k] if len(node.inputs) > k else ""


def axes_of(ctx: EmitContext, node: Node, since: int, k: int = 1) -> list[int] | None:
    """Axes from the attribute (opsets before `since`) or from input `k` (which must be a constant)."""
    if ctx.graph.opset < since:
        return node.attrs.get("axes")
    return None if not _opt(node, k) else [int(a) for a in ctx.static(node.inputs[k]).ravel()]


def shape_operand(ctx: EmitContext, name: str, x: tf.Tensor | None = None, allow_zero: bool = False):
    """A Reshape-style target: plain ints where known (one symbol becomes -1), else a runtime int64 vector."""
    arr = ctx.const(name)
    if arr is None:
        return tf.cast(ctx.onnx_order(name), tf.int64)
    vals = list(arr.ravel())
    if x is not None and not allow_zero:
        in_shape = x.shape.as_list()
        for i, v in enumerate(vals):
            if not isinstance(v, Sym) and v == 0:
                vals[i] = in_shape[i] if in_shape[i] is not None else None
    if None in vals:  # copied dims unknown until run time
        dyn = tf.shape(x, out_type=tf.int64)
        parts = [dyn[i] if v is None else (ctx.sym_value(v) if isinstance(v, Sym) else tf.constant(int(v), tf.int64))
                 for i, v in enumerate(vals)]
        return tf.stack(parts)
    syms = [i for i, v in enumerate(vals) if isinstance(v, Sym)]
    if len(syms) == 1 and -1 not in vals:
        vals[syms[0]] = -1
        return [int(v) for v in vals]
    if syms:
        return ctx.materialize(np.array(vals, dtype=object))
    return [int(v) for v in vals]


@op("Reshape")
def reshape(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    target = shape_operand(ctx, node.inputs[1], x, bool(node.attrs.get("allowzero", 0)))
    ctx.set(node.outputs[0], tf.reshape(x, target))


@op("Flatten")
def flatten(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    dims = x.shape.as_list()
    axis = node.attrs.get("axis", 1)
    axis = axis + len(dims) if axis < 0 else axis  # axis is in [-r, r]; -1 splits off the last axis
    head, tail = dims[:axis], dims[axis:]
    if None not in tail:
        target = [-1, int(np.prod(tail))]
    elif None not in head:
        target = [int(np.prod(head)), -1]
    else:
        dyn = tf.shape(x)
        target = tf.stack([tf.reduce_prod(dyn[:axis]), tf.reduce_prod(dyn[axis:])])
    ctx.set(node.outputs[0], tf.reshape(x, target))


@op("Transpose")
def transpose(ctx: EmitContext, node: Node) -> None:
    rank = ctx.rank(node.inputs[0])
    q = list(node.attrs.get("perm", range(rank - 1, -1, -1)))
    q_inv = [q.index(a) for a in range(rank)]
    src = ctx.perm(node.inputs[0]) or tuple(range(rank))
    ctx.set(node.outputs[0], ctx.raw(node.inputs[0]), tuple(q_inv[a] for a in src))


@op("Squeeze")
def squeeze(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    axes = axes_of(ctx, node, 13)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape.as_list()) if d == 1]
    ctx.set(node.outputs[0], tf.squeeze(x, [a % x.shape.rank for a in axes]) if axes else tf.identity(x))


@op("Unsqueeze")
def unsqueeze(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    axes = axes_of(ctx, node, 13)
    rank = x.shape.rank + len(axes)
    for a in sorted(a % rank for a in axes):
        x = tf.expand_dims(x, a)
    ctx.set(node.outputs[0], x)


@op("Concat")
def concat(ctx: EmitContext, node: Node) -> None:
    names = [i for i in node.inputs if i]
    rank = ctx.rank(names[0])
    axis = node.attrs["axis"] % rank
    perms = {ctx.perm(n) for n in names if ctx.const(n) is None}
    perm = perms.pop() if len(perms) == 1 else None
    tensors = [ctx.in_perm(n, perm) for n in names]
    tf_axis = perm.index(axis) if perm else axis
    ctx.set(node.outputs[0], tf.concat(tensors, tf_axis), perm)


@op("Gather")
def gather(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs.get("axis", 0) % x.shape.rank
    idx_const = ctx.const(node.inputs[1])
    dim = x.shape[axis]
    if idx_const is not None and idx_const.dtype != object and dim is not None:
        idx = tf.constant(np.where(idx_const < 0, idx_const + dim, idx_const).astype(np.int64))
    else:
        idx = ctx.onnx_order(node.inputs[1])
        size = tf.shape(x, out_type=idx.dtype)[axis]
        idx = tf.where(idx < 0, idx + size, idx)
    ctx.set(node.outputs[0], tf.gather(x, idx, axis=axis))


@op("Slice")
def slice_(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    rank = x.shape.rank
    if ctx.graph.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = (list(ctx.static(node.inputs[k]).ravel()) for k in (1, 2))
        axes = list(ctx.static(_opt(node, 3)).ravel()) if _opt(node, 3) else list(range(len(starts)))
        steps = list(ctx.static(_opt(node, 4)).ravel()) if _opt(node, 4) else [1] * len(starts)
    index = [slice(None)] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        s, e, st = int(s), int(e), int(st)
        dim = x.shape[int(a) % rank]
        lo = -dim if dim else -INT32_MAX
        s = min(max(s, lo), INT32_MAX)
        e_arg = None if (st < 0 and e < lo) or (st > 0 and e >= INT32_MAX) else min(max(e, lo), INT32_MAX)
        index[int(a) % rank] = slice(s, e_arg, st)
    ctx.set(node.outputs[0], x[tuple(index)])


@op("Split")
def split(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs.get("axis", 0) % x.shape.rank
    if ctx.graph.opset < 13:
        sizes = node.attrs.get("split")
    else:
        sizes = [int(v) for v in ctx.static(node.inputs[1])] if _opt(node, 1) else None
    n = len(node.outputs)
    if sizes is None:
        dim = x.shape[axis]
        if dim is None:
            raise Decline("an even Split over a dynamic axis")
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    for name, part in zip(node.outputs, tf.split(x, sizes, axis=axis)):
        ctx.set(name, part)


@op("Shape")
def shape(ctx: EmitContext, node: Node) -> None:
    s = tf.shape(ctx.onnx_order(node.inputs[0]), out_type=tf.int64)
    ctx.set(node.outputs[0], s[node.attrs.get("start", 0):node.attrs.get("end")])


@op("Size")
def size(ctx: EmitContext, node: Node) -> None:
    ctx.set(node.outputs[0], tf.size(ctx.raw(node.inputs[0]), out_type=tf.int64))


@op("Expand")
def expand(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    target = shape_operand(ctx, node.inputs[1], allow_zero=True)
    target = tf.constant(target, tf.int64) if isinstance(target, list) else target
    arr = ctx.const(node.inputs[1])
    if arr is not None and not is_symbolic(arr) and None not in x.shape.as_list():
        out = np.broadcast_shapes(tuple(x.shape.as_list()), tuple(int(v) for v in arr))
        ctx.set(node.outputs[0], tf.broadcast_to(x, out))
        return
    ctx.set(node.outputs[0], tf.broadcast_to(x, tf.broadcast_dynamic_shape(tf.shape(x, out_type=tf.int64), target)))


@op("Tile")
def tile(ctx: EmitContext, node: Node) -> None:
    reps = shape_operand(ctx, node.inputs[1], allow_zero=True)
    ctx.set(node.outputs[0], tf.tile(ctx.onnx_order(node.inputs[0]), reps))


@op("Pad")
def pad(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    rank = x.shape.rank
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if ctx.graph.opset < 11:
        pads, value = list(node.attrs.get("pads", node.attrs.get("paddings"))), node.attrs.get("value", 0.0)
        axes = list(range(rank))
    else:
        pads = [int(p) for p in ctx.static(node.inputs[1])]
        value = ctx.static(_opt(node, 2)).item() if _opt(node, 2) else 0
        axes = [int(a) % rank for a in ctx.static(_opt(node, 3))] if _opt(node, 3) else list(range(rank))
    if min(pads) < 0:
        raise Decline("negative pads (cropping)")
    n = len(axes)
    paddings = [[0, 0] for _ in range(rank)]
    for i, a in enumerate(axes):
        paddings[a] = [pads[i], pads[i + n]]
    if mode not in ("constant", "reflect", "edge"):
        raise Decline(f"Pad mode '{mode}'")
    if mode == "edge":
        y = _edge_pad(x, paddings)
    elif mode == "reflect":
        y = tf.pad(x, paddings, mode="REFLECT")
    else:
        y = tf.pad(x, paddings, constant_values=tf.constant(value, x.dtype))
    ctx.set(node.outputs[0], y)


def _edge_pad(x: tf.Tensor, paddings: list[list[int]]) -> tf.Tensor:
    """Edge (replicate) padding, which TF's Pad lacks: gather each padded axis with clamped indices."""
    for axis, (b, e) in enumerate(paddings):
        if not b and not e:
            continue
        dim = x.shape[axis]
        if dim is None:
            raise Decline("edge Pad over a dynamic axis")
        x = tf.gather(x, tf.constant(np.clip(np.arange(-b, dim + e), 0, dim - 1), tf.int64), axis=axis)
    return x


@op("ConstantOfShape")
def constant_of_shape(ctx: EmitContext, node: Node) -> None:
    value = node.attrs.get("value", np.zeros(1, np.float32))
    shape_t = shape_operand(ctx, node.inputs[0], allow_zero=True)
    ctx.set(node.outputs[0], tf.fill(shape_t, tf.constant(value.ravel()[0], tf.as_dtype(value.dtype))))


@op("Range")
def range_(ctx: EmitContext, node: Node) -> None:
    start, limit, delta = (ctx.onnx_order(i) for i in node.inputs)
    ctx.set(node.outputs[0], tf.range(start, limit, delta))


@op("Constant")
def constant(ctx: EmitContext, node: Node) -> None:
    raise Decline("a Constant that could not be evaluated (sparse or string value)")
