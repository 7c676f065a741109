"""Shape and data-movement ops. Most need the ONNX memory order; Transpose only relabels the layout."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, Perm, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.attrs import constant_of_shape_value
from graphport.ir.graph import Node
from graphport.ir.symbolic import Sym, is_symbolic

INT32_MAX = 2**31 - 1


def runtime_input(ctx: EmitContext, node: Node, k: int) -> bool:
    """Whether optional input `k` is given and only known at run time."""
    return bool(opt_input(node, k)) and ctx.const(node.inputs[k]) is None


def runtime_vector(ctx: EmitContext, name: str) -> tuple[tf.Tensor, int]:
    """A runtime int vector as int64 with its static length (Decline when unknown: output ranks would be too)."""
    t = tf.reshape(tf.cast(ctx.onnx_order(name), tf.int64), [-1])
    n = t.shape.num_elements()
    if n is None:
        raise Decline(f"runtime input '{name}' of unknown length")
    return t, n


def _axis_mask(axes: tf.Tensor, rank: int) -> tf.Tensor:
    """[rank] bool: which axes of a rank-`rank` tensor the (possibly negative) runtime `axes` name."""
    axes = tf.where(axes < 0, axes + rank, axes)
    return tf.reduce_any(tf.equal(tf.range(rank, dtype=tf.int64)[:, None], axes[None, :]), axis=1)


def static_axes(ctx: EmitContext, node: Node, k: int = 1) -> list[int] | None:
    """Axes from optional input `k` (the opset-13/18 form of Squeeze, Unsqueeze, Reduce*), which must be a
    constant; None when the input is absent."""
    return None if not opt_input(node, k) else [int(a) for a in ctx.static(node.inputs[k]).ravel()]


def ir_dim(ctx: EmitContext, name: str, axis: int) -> Sym | int | None:
    """Dim `axis` of `name` as the IR knows it (a symbol's `Sym`, which `sym_value` reads from the one shared
    Shape of a graph input), or None."""
    shape = ctx.graph.values[name].shape if name in ctx.graph.values else None
    d = shape[axis] if shape is not None and axis < len(shape) else None
    if isinstance(d, str):
        return ctx.graph.sym(d) if d in ctx.graph.symbols else None
    return d


def ir_shape(ctx: EmitContext, name: str) -> tf.Tensor | None:
    """The full shape of `name` as a runtime vector built from the shared batch read, if the IR knows every dim."""
    shape = ctx.graph.values[name].shape if name in ctx.graph.values else None
    if shape is None or None in shape:
        return None
    return ctx.materialize(np.array([ir_dim(ctx, name, i) for i in range(len(shape))], dtype=object))


def shape_operand(ctx: EmitContext, name: str, x: tf.Tensor | None = None, allow_zero: bool = False,
                  src: str | None = None):
    """A Reshape-style target: plain ints where known (one symbol becomes -1), else a runtime int64 vector.

    `src`, the ONNX name of `x`, lets a copied (0) dim unknown to TF come from the IR's symbolic shape."""
    arr = ctx.const(name)
    if arr is None:
        target = tf.cast(ctx.onnx_order(name), tf.int64)
        if x is None or allow_zero:
            return target
        n = target.shape.num_elements()
        if n is None:
            raise Decline(f"runtime shape '{name}' of unknown length")
        # 0 copies the input's dim there; a 0 past the input's rank is invalid ONNX and stays 0
        copied = tf.concat([tf.shape(x, out_type=tf.int64), tf.zeros([n], tf.int64)], 0)[:n]
        return tf.where(tf.equal(target, 0), copied, target)
    vals = list(arr.ravel())
    if x is not None and not allow_zero:
        in_shape = x.shape.as_list()
        for i, v in enumerate(vals):
            if not isinstance(v, Sym) and v == 0:
                vals[i] = in_shape[i] if in_shape[i] is not None else None
    if None in vals and src is not None:  # copied dims: the IR may know them symbolically
        vals = [ir_dim(ctx, src, i) if v is None else v for i, v in enumerate(vals)]
    if None in vals:  # copied dims unknown until run time
        dyn = tf.shape(x, out_type=tf.int64)
        parts = [dyn[i] if v is None else (ctx.sym_value(v) if isinstance(v, Sym) else tf.constant(int(v), tf.int64))
                 for i, v in enumerate(vals)]
        return tf.stack(parts)
    if x is not None:  # Reshape only: -1 means "infer"
        return shape_vector(ctx, vals)
    if any(isinstance(v, Sym) for v in vals):
        return ctx.materialize(np.array(vals, dtype=object))
    return [int(v) for v in vals]


def channel_layout(ctx: EmitContext, name: str, axis: int) -> Perm:
    """`name`'s own layout when ONNX `axis` is its innermost TF axis (a channel split of channels-last data, which
    convs consume there), else None: a split's outputs may each need the ONNX order back, and restoring it once
    before the split is cheaper than once per output."""
    perm = ctx.perm(name)
    return perm if perm is not None and perm.index(axis) == len(perm) - 1 else None


def shape_vector(ctx: EmitContext, dims: list) -> list[int] | tf.Tensor:
    """A Reshape target from IR dims (ints and `Sym`s): plain ints with one symbol as -1, else a runtime vector."""
    syms = [i for i, v in enumerate(dims) if isinstance(v, Sym)]
    if len(syms) == 1 and -1 not in dims:
        return [-1 if i == syms[0] else int(v) for i, v in enumerate(dims)]
    if syms:
        return ctx.materialize(np.array(dims, dtype=object))
    return [int(v) for v in dims]


@op("Transpose")
def transpose(ctx: EmitContext, node: Node) -> None:
    rank = ctx.rank(node.inputs[0])
    q = list(node.attrs.get("perm", range(rank - 1, -1, -1)))
    q_inv = [q.index(a) for a in range(rank)]
    src = ctx.perm(node.inputs[0]) or tuple(range(rank))
    ctx.set(node.outputs[0], ctx.raw(node.inputs[0]), tuple(q_inv[a] for a in src))


def _squeeze(ctx: EmitContext, node: Node, axes: list[int] | None) -> None:
    x = ctx.onnx_order(node.inputs[0])
    if axes is None:
        axes = [i for i, d in enumerate(x.shape.as_list()) if d == 1]
    ctx.set(node.outputs[0], tf.squeeze(x, [a % x.shape.rank for a in axes]) if axes else tf.identity(x))


@op("Squeeze")
def squeeze_1(ctx: EmitContext, node: Node) -> None:
    _squeeze(ctx, node, node.attrs.get("axes"))


@op("Squeeze", since=13)
def squeeze(ctx: EmitContext, node: Node) -> None:
    if not runtime_input(ctx, node, 1):
        _squeeze(ctx, node, static_axes(ctx, node))
        return
    x = ctx.onnx_order(node.inputs[0])  # drop the named dims; Reshape fails if one isn't 1
    axes_t, n = runtime_vector(ctx, node.inputs[1])
    dims = tf.boolean_mask(tf.shape(x, out_type=tf.int64), tf.logical_not(_axis_mask(axes_t, x.shape.rank)))
    y = tf.reshape(x, dims)
    y.set_shape([None] * (x.shape.rank - n))
    ctx.set(node.outputs[0], y)


def _unsqueeze(ctx: EmitContext, node: Node, axes: list[int]) -> None:
    x = ctx.onnx_order(node.inputs[0])
    rank = x.shape.rank + len(axes)
    for a in sorted(a % rank for a in axes):
        x = tf.expand_dims(x, a)
    ctx.set(node.outputs[0], x)


@op("Unsqueeze")
def unsqueeze_1(ctx: EmitContext, node: Node) -> None:
    _unsqueeze(ctx, node, node.attrs["axes"])


@op("Unsqueeze", since=13)
def unsqueeze(ctx: EmitContext, node: Node) -> None:
    if not runtime_input(ctx, node, 1):
        _unsqueeze(ctx, node, static_axes(ctx, node))
        return
    x = ctx.onnx_order(node.inputs[0])  # 1 at the named output axes, input dims between
    axes_t, n = runtime_vector(ctx, node.inputs[1])
    rank = x.shape.rank + n
    new = _axis_mask(axes_t, rank)
    src = tf.cumsum(1 - tf.cast(new, tf.int64)) - 1
    dims = tf.concat([tf.shape(x, out_type=tf.int64), [1]], 0)
    y = tf.reshape(x, tf.where(new, tf.ones([rank], tf.int64), tf.gather(dims, tf.maximum(src, 0))))
    y.set_shape([None] * rank)
    ctx.set(node.outputs[0], y)


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
    """A 1-D constant index keeps the rank, so it gathers in the input's own layout, like Slice: a channel
    permutation (a channel shuffle, passes/shuffle.py) of channels-last data stays there instead of costing two
    Transposes."""
    idx_const = ctx.const(node.inputs[1])
    rank = ctx.rank(node.inputs[0])
    axis = node.attrs["axis"] % rank
    layout = ctx.perm(node.inputs[0]) if idx_const is not None and idx_const.ndim == 1 else None
    x = ctx.in_perm(node.inputs[0], layout)
    if layout is not None:
        axis = layout.index(axis)
    dim = x.shape[axis]
    if idx_const is not None and idx_const.dtype != object and dim is not None:
        idx = tf.constant(np.where(idx_const < 0, idx_const + dim, idx_const).astype(np.int64))
    else:
        idx = ctx.onnx_order(node.inputs[1])
        size = tf.shape(x, out_type=idx.dtype)[axis]
        idx = tf.where(idx < 0, idx + size, idx)
    ctx.set(node.outputs[0], tf.gather(x, idx, axis=axis), layout)


@op("Slice")
def slice_1(ctx: EmitContext, node: Node) -> None:
    starts, ends = node.attrs["starts"], node.attrs["ends"]
    axes = node.attrs.get("axes", list(range(len(starts))))
    _static_slice(ctx, node, starts, ends, axes, [1] * len(starts))


@op("Slice", since=10)
def slice_(ctx: EmitContext, node: Node) -> None:
    symbolic = any(opt_input(node, k) and ctx.const(node.inputs[k]).dtype == object for k in range(1, 5)
                   if not runtime_input(ctx, node, k))
    if symbolic or any(runtime_input(ctx, node, k) for k in range(1, 5)):  # e.g. ends = min(T, T') from Shapes
        ctx.set(node.outputs[0], _runtime_slice(ctx, node, ctx.onnx_order(node.inputs[0])))
        return
    starts, ends = (list(ctx.static(node.inputs[k]).ravel()) for k in (1, 2))
    axes = list(ctx.static(opt_input(node, 3)).ravel()) if opt_input(node, 3) else list(range(len(starts)))
    steps = list(ctx.static(opt_input(node, 4)).ravel()) if opt_input(node, 4) else [1] * len(starts)
    _static_slice(ctx, node, starts, ends, axes, steps)


def _static_slice(ctx: EmitContext, node: Node, starts: list, ends: list, axes: list, steps: list) -> None:
    """ONNX's clamping of constant starts/ends (any int64) into what a strided slice takes. The slice runs in the
    input's own layout: a channel slice of channels-last data (GhostNet, ShuffleNet) feeds convs there, and the
    one output costs at most the one restore that slicing in ONNX order would have cost, of fewer elements."""
    x = ctx.raw(node.inputs[0])
    layout = ctx.perm(node.inputs[0])
    rank = x.shape.rank
    index = [slice(None)] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        s, e, st = int(s), int(e), int(st)
        axis = layout.index(int(a) % rank) if layout else int(a) % rank
        dim = x.shape[axis]
        lo = -dim if dim else -INT32_MAX
        s = min(max(s, lo), INT32_MAX)
        e_arg = None if (st < 0 and e < lo) or (st > 0 and e >= INT32_MAX) else min(max(e, lo), INT32_MAX)
        index[axis] = slice(s, e_arg, st)
    ctx.set(node.outputs[0], x[tuple(index)], layout)


def _runtime_slice(ctx: EmitContext, node: Node, x: tf.Tensor) -> tf.Tensor:
    """Slice with runtime starts/ends/axes/steps: ONNX's clamping computed in-graph, then one Gather per axis
    (strided_slice would read a clamped end of -1 as 'the last element')."""
    rank = x.shape.rank
    starts, n = runtime_vector(ctx, node.inputs[1])
    ends = runtime_vector(ctx, node.inputs[2])[0]
    axes = runtime_vector(ctx, node.inputs[3])[0] if opt_input(node, 3) else tf.range(n, dtype=tf.int64)
    steps = runtime_vector(ctx, node.inputs[4])[0] if opt_input(node, 4) else tf.ones([n], tf.int64)
    dims = tf.shape(x, out_type=tf.int64)
    for i in range(n):
        axis = tf.where(axes[i] < 0, axes[i] + rank, axes[i])
        dim, step = tf.gather(dims, axis), steps[i]
        s = tf.where(starts[i] < 0, starts[i] + dim, starts[i])
        e = tf.where(ends[i] < 0, ends[i] + dim, ends[i])
        forward = step > 0
        s = tf.where(forward, tf.clip_by_value(s, 0, dim), tf.clip_by_value(s, 0, dim - 1))
        e = tf.where(forward, tf.clip_by_value(e, 0, dim), tf.clip_by_value(e, -1, dim - 1))
        x = tf.gather(x, tf.range(s, e, step), axis=axis)
    x.set_shape([None] * rank)
    return x


@op("Split")
def split_1(ctx: EmitContext, node: Node) -> None:
    _split(ctx, node, node.attrs.get("split"))


@op("Split", since=13)
def split(ctx: EmitContext, node: Node) -> None:
    sizes = None
    if runtime_input(ctx, node, 1):  # SplitV takes runtime sizes; their count is the number of outputs
        sizes = runtime_vector(ctx, node.inputs[1])[0]
    elif opt_input(node, 1):
        sizes = [int(v) for v in ctx.static(node.inputs[1])]
    _split(ctx, node, sizes)


def _split(ctx: EmitContext, node: Node, sizes: list[int] | tf.Tensor | None) -> None:
    """Split into the given sizes, or into equal parts (the last one smaller) when none are given; a channel split
    of channels-last data stays channels-last, like Slice."""
    rank = ctx.rank(node.inputs[0])
    axis = node.attrs["axis"] % rank
    layout = channel_layout(ctx, node.inputs[0], axis)
    x = ctx.in_perm(node.inputs[0], layout)
    axis = layout.index(axis) if layout else axis
    n = len(node.outputs)
    if sizes is None:
        dim = x.shape[axis]
        if dim is None:
            raise Decline("an even Split over a dynamic axis")
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    for name, part in zip(node.outputs, tf.split(x, sizes, axis=axis, num=n)):
        ctx.set(name, part, layout)


@op("Shape")
def shape(ctx: EmitContext, node: Node) -> None:
    s = tf.shape(ctx.onnx_order(node.inputs[0]), out_type=tf.int64)
    ctx.set(node.outputs[0], s[node.attrs.get("start"):node.attrs.get("end")])  # start/end: from Shape-15 on


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
    out = ir_shape(ctx, node.outputs[0])  # from the shared batch read rather than one more Shape(x)
    if out is not None:
        ctx.set(node.outputs[0], tf.broadcast_to(x, out))
        return
    ctx.set(node.outputs[0], tf.broadcast_to(x, tf.broadcast_dynamic_shape(tf.shape(x, out_type=tf.int64), target)))


@op("Tile")
def tile(ctx: EmitContext, node: Node) -> None:
    reps = shape_operand(ctx, node.inputs[1], allow_zero=True)
    ctx.set(node.outputs[0], tf.tile(ctx.onnx_order(node.inputs[0]), reps))


@op("ConstantOfShape")
def constant_of_shape(ctx: EmitContext, node: Node) -> None:
    value = constant_of_shape_value(node.attrs)
    shape_t = shape_operand(ctx, node.inputs[0], allow_zero=True)
    ctx.set(node.outputs[0], tf.fill(shape_t, tf.constant(value.ravel()[0], tf.as_dtype(value.dtype))))


@op("Range")
def range_(ctx: EmitContext, node: Node) -> None:
    start, limit, delta = (ctx.onnx_order(i) for i in node.inputs)
    ctx.set(node.outputs[0], tf.range(start, limit, delta))


@op("Constant")
def constant(ctx: EmitContext, node: Node) -> None:
    raise Decline("a Constant that could not be evaluated (sparse or string value)")
