"""Indexing ops: gathers and scatters by index tensors, OneHot, Trilu, EyeLike, ReverseSequence, and the selections
whose output size depends on the data (NonZero, Compress, Unique, TopK with a runtime k), which stay dynamic.

Index inputs are read as int64 and ONNX's negative indices (counting back from the end of their axis) are
normalised in-graph against the runtime size, since TF's gather and scatter kernels reject them. The element-wise
forms (GatherElements, ScatterElements) are expressed as their N-d counterparts over full coordinates, so one
kernel family (GatherNd, TensorScatter*) serves all four ops.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from onnx import helper

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node

_SCATTERS = {"none": tf.tensor_scatter_nd_update, "add": tf.tensor_scatter_nd_add,
             "max": tf.tensor_scatter_nd_max, "min": tf.tensor_scatter_nd_min}


def _shape_of(t: tf.Tensor) -> list[int] | tf.Tensor:
    """The shape as plain ints when TF knows every dim (so ranges over it stay constants), else a runtime vector."""
    dims = t.shape.as_list()
    return dims if None not in dims else tf.shape(t, out_type=tf.int64)


def _axis_range(shape: list[int] | tf.Tensor, axis: int) -> tf.Tensor:
    """0..shape[axis]-1 as int64: a constant for a static dim, a runtime Range for a dynamic one."""
    n = shape[axis]
    return tf.constant(np.arange(n), tf.int64) if isinstance(n, int) else tf.range(n)


def _iota(shape: list[int] | tf.Tensor, rank: int, axis: int) -> tf.Tensor:
    """Every element's coordinate along `axis` of a tensor of `shape` (rank `rank`)."""
    line = tf.reshape(_axis_range(shape, axis), [-1 if d == axis else 1 for d in range(rank)])
    return tf.broadcast_to(line, shape)


def _wrap(idx: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Negative indices count back from `size` (ONNX allows [-size, size-1]; TF kernels take [0, size-1] only)."""
    return tf.where(idx < 0, idx + size, idx)


def _indices(ctx: EmitContext, name: str) -> tf.Tensor:
    return tf.cast(ctx.onnx_order(name), tf.int64)


def _element_coords(x: tf.Tensor, idx: tf.Tensor, axis: int) -> tf.Tensor:
    """[*idx.shape, rank] coordinates into `x` for GatherElements/ScatterElements: each entry's own position, with
    its (normalised) index value on `axis`. `idx` may be smaller than `x` on the other axes, as ONNX allows."""
    rank = idx.shape.rank
    idx = _wrap(idx, tf.shape(x, out_type=tf.int64)[axis])
    shape = _shape_of(idx)
    return tf.stack([idx if d == axis else _iota(shape, rank, d) for d in range(rank)], axis=-1)


def _tuple_width(idx: tf.Tensor, op_type: str) -> int:
    k = idx.shape[-1]
    if k is None:
        raise Decline(f"{op_type} indices whose last dim (the index-tuple length) is unknown at conversion")
    return k


@op("GatherElements", since=11)
def gather_elements(ctx: EmitContext, node: Node) -> None:
    """GatherNd over each entry's full coordinates, its index on `axis` (one kernel with ScatterElements)."""
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs["axis"] % x.shape.rank
    ctx.set(node.outputs[0], tf.gather_nd(x, _element_coords(x, _indices(ctx, node.inputs[1]), axis)))


@op("GatherND", since=11)
def gather_nd(ctx: EmitContext, node: Node) -> None:
    """GatherNd has no batch dims: for batch_dims b (an attribute from GatherND-12 on; 0 before) each index tuple
    is prefixed with its own position along the first b axes, which addresses the matching batch of `data`."""
    x = ctx.onnx_order(node.inputs[0])
    idx = _indices(ctx, node.inputs[1])
    b = node.attrs.get("batch_dims", 0)
    k = _tuple_width(idx, "GatherND")
    idx = _wrap(idx, tf.shape(x, out_type=tf.int64)[b:b + k])
    if b:
        lead = _shape_of(idx)[:-1]
        rank = idx.shape.rank - 1
        idx = tf.concat([tf.stack([_iota(lead, rank, d) for d in range(b)], axis=-1), idx], axis=-1)
    ctx.set(node.outputs[0], tf.gather_nd(x, idx))


def _scatter(x: tf.Tensor, coords: tf.Tensor, updates: tf.Tensor, reduction: str) -> tf.Tensor:
    """ONNX's sequential scatter loop. TensorScatterMax/Min apply every duplicate, as the loop does; TF 2.5 has no
    TensorScatterMul, so "mul" multiplies `x` by the product of the updates aimed at each slot (UnsortedSegmentProd
    gives 1 where none land)."""
    if reduction in _SCATTERS:
        return _SCATTERS[reduction](x, coords, updates)
    if reduction != "mul":
        raise Decline(f"scatter reduction '{reduction}'")
    k = coords.shape[-1]
    dims = tf.shape(x, out_type=tf.int64)
    strides = tf.math.cumprod(dims[:k], exclusive=True, reverse=True)
    slots = tf.reshape(tf.reduce_sum(coords * strides, axis=-1), [-1])
    slices = tf.reshape(updates, tf.concat([[-1], dims[k:]], 0))
    factor = tf.math.unsorted_segment_prod(slices, slots, tf.reduce_prod(dims[:k]))
    return x * tf.reshape(factor, dims)


@op("ScatterElements", since=11)
def scatter_elements(ctx: EmitContext, node: Node) -> None:
    """Scatter (opset 9-10) is ScatterElements under its deprecated name; `reduction` exists from
    ScatterElements-16 on (add, mul), with max and min from 18; before that it is "none"."""
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs["axis"] % x.shape.rank
    coords = _element_coords(x, _indices(ctx, node.inputs[1]), axis)
    updates = ctx.onnx_order(node.inputs[2])
    ctx.set(node.outputs[0], _scatter(x, coords, updates, node.attrs.get("reduction", "none")))


op("Scatter", since=9)(scatter_elements)


@op("ScatterND", since=11)
def scatter_nd(ctx: EmitContext, node: Node) -> None:
    """Index tuples of length k address the first k axes of `data`; `reduction` as ScatterElements."""
    x = ctx.onnx_order(node.inputs[0])
    idx = _indices(ctx, node.inputs[1])
    k = _tuple_width(idx, "ScatterND")
    idx = _wrap(idx, tf.shape(x, out_type=tf.int64)[:k])
    updates = ctx.onnx_order(node.inputs[2])
    ctx.set(node.outputs[0], _scatter(x, idx, updates, node.attrs.get("reduction", "none")))


def _int_scalar(ctx: EmitContext, name: str) -> int | tf.Tensor:
    """A one-element input as a Python int when constant (static output dims), else a runtime int64 scalar.

    Float values truncate toward zero, as ONNX Runtime reads OneHot's depth."""
    arr = ctx.const(name)
    if arr is not None and arr.dtype != object:
        return int(arr.ravel()[0])
    return tf.cast(tf.reshape(ctx.onnx_order(name), []), tf.int64)


@op("OneHot", since=9)
def one_hot(ctx: EmitContext, node: Node) -> None:
    """Indices in [-depth, -1] count back from depth; others out of range give all-off rows, as TF's OneHot does.
    OneHot-9's text has negative indices all-off, but ONNX Runtime (the verification reference) and ONNX's own
    reference implementation wrap them at every opset, so graphport does too."""
    idx = _indices(ctx, node.inputs[0])  # float indices truncate, as in ONNX Runtime
    depth = _int_scalar(ctx, node.inputs[1])
    idx = _wrap(idx, depth)
    values = tf.reshape(ctx.onnx_order(node.inputs[2]), [2])  # [off, on]
    axis = node.attrs["axis"] % (idx.shape.rank + 1)
    depth = depth if isinstance(depth, int) else tf.cast(depth, tf.int32)
    ctx.set(node.outputs[0], tf.one_hot(idx, depth, values[1], values[0], axis=axis))


def _diagonal_offsets(x: tf.Tensor) -> tf.Tensor:
    """[rows, cols] of col - row for the last two axes of `x`: which diagonal each entry sits on."""
    shape = _shape_of(x)
    rank = x.shape.rank
    return _axis_range(shape, rank - 1)[None, :] - _axis_range(shape, rank - 2)[:, None]


@op("Trilu", since=14)
def trilu(ctx: EmitContext, node: Node) -> None:
    """Keeps entries with col - row >= k (upper) or <= k (lower), zeroing the rest. MatrixBandPart only keeps
    bands around the main diagonal (k = 0 or a count of whole diagonals on each side), so the mask is built from
    two ranges instead; k may be a runtime scalar."""
    x = ctx.onnx_order(node.inputs[0])
    k = _int_scalar(ctx, node.inputs[1]) if opt_input(node, 1) else 0
    offsets = _diagonal_offsets(x)
    keep = offsets >= k if node.attrs["upper"] else offsets <= k
    ctx.set(node.outputs[0], tf.where(keep, x, tf.zeros_like(x)))


@op("EyeLike", since=9)
def eye_like(ctx: EmitContext, node: Node) -> None:
    """Ones on diagonal k of a matrix shaped like the input: a constant when the shape is static, else compared
    ranges. `dtype` defaults to the input's element type."""
    name = node.inputs[0]
    given = node.attrs.get("dtype")
    dtype = ctx.raw(name).dtype if given is None else tf.as_dtype(helper.tensor_dtype_to_np_dtype(given))
    k = node.attrs["k"]
    rows, cols = ctx.shape_ints(name)
    if rows is not None and cols is not None:
        ctx.set(node.outputs[0], tf.constant(np.eye(rows, cols, k, dtype=dtype.as_numpy_dtype)))
        return
    ctx.set(node.outputs[0], tf.cast(tf.equal(_diagonal_offsets(ctx.onnx_order(name)), k), dtype))


@op("ReverseSequence", since=10)
def reverse_sequence(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    lens = _indices(ctx, node.inputs[1])
    y = tf.reverse_sequence(x, lens, seq_axis=node.attrs["time_axis"], batch_axis=node.attrs["batch_axis"])
    ctx.set(node.outputs[0], y)


@op("NonZero", since=9)
def non_zero(ctx: EmitContext, node: Node) -> None:
    """Where's [n, rank] coordinates, transposed to ONNX's [rank, n]. A scalar reads as one element (ONNX Runtime
    answers [1, n] for it)."""
    x = ctx.onnx_order(node.inputs[0])
    if x.shape.rank == 0:
        x = tf.reshape(x, [1])
    mask = x if x.dtype == tf.bool else tf.not_equal(x, tf.zeros([], x.dtype))
    ctx.set(node.outputs[0], tf.transpose(tf.where(mask)))


@op("Compress", since=9)
def compress(ctx: EmitContext, node: Node) -> None:
    """Gathers the positions where the condition holds. A condition shorter than the axis leaves the rest out;
    entries past its end are ignored (as ONNX Runtime does), so it is cut to the axis length first. With an axis
    the gather runs in the input's own layout; without one, on the input flattened in ONNX order."""
    name = node.inputs[0]
    cond = tf.reshape(ctx.onnx_order(node.inputs[1]), [-1])
    if node.attrs.get("axis") is None:
        x = tf.reshape(ctx.onnx_order(name), [-1])
        ctx.set(node.outputs[0], tf.gather(x, tf.reshape(tf.where(cond[:tf.size(x)]), [-1])))
        return
    x = ctx.raw(name)
    perm = ctx.perm(name) or tuple(range(x.shape.rank))
    tf_axis = perm.index(node.attrs["axis"] % x.shape.rank)
    picks = tf.reshape(tf.where(cond[:tf.shape(x)[tf_axis]]), [-1])
    ctx.set(node.outputs[0], tf.gather(x, picks, axis=tf_axis), ctx.perm(name))


def _descending(x: tf.Tensor) -> tf.Tensor:
    """An order-reversing, exactly invertible map, so that TopKV2 (largest first) can select smallest first:
    negation for floats, bitwise not for integers (no overflow at the type's minimum, and unsigned types too)."""
    if x.dtype.is_floating:
        return -x
    if x.dtype == tf.bool:
        return tf.bitwise.invert(tf.cast(x, tf.uint8))
    return tf.bitwise.invert(x)


def _top_k(ctx: EmitContext, node: Node, k: int | tf.Tensor) -> None:
    """TopKV2 works on the last axis, so the layout is relabelled to put `axis` last (no data move when it already
    is). TopKV2 puts the lower index first among equal values, which is ONNX's (and ONNX Runtime's) tie rule.
    sorted=0 leaves the order unspecified: the sorted order is one valid answer."""
    name = node.inputs[0]
    rank = ctx.rank(name)
    axis = node.attrs["axis"] % rank
    last = tuple(a for a in ctx.perm(name) or range(rank) if a != axis) + (axis,)
    x = ctx.in_perm(name, last)
    largest = node.attrs.get("largest", 1)  # largest and sorted are attributes from TopK-11 on
    k = k if isinstance(k, int) else tf.cast(k, tf.int32)
    values, idx = tf.math.top_k(x if largest else _descending(x), k, sorted=True)
    ctx.set(node.outputs[0], values if largest else _descending(values), last)
    ctx.set(node.outputs[1], tf.cast(idx, tf.int64), last)


@op("TopK")
def top_k_1(ctx: EmitContext, node: Node) -> None:
    """TopK-1 takes k as an attribute."""
    _top_k(ctx, node, node.attrs["k"])


@op("TopK", since=10)
def top_k(ctx: EmitContext, node: Node) -> None:
    """From TopK-10 k is an input; a runtime k makes the output length along `axis` dynamic."""
    _top_k(ctx, node, _int_scalar(ctx, node.inputs[1]))


MAX_SORT_COLUMNS = 64  # wider (or dynamic-width) slices are ordered by pairwise comparison instead


def _lexsort(rows: tf.Tensor, width: int | None) -> tf.Tensor:
    """The permutation sorting the distinct rows of a [n, width] tensor lexicographically (numpy's and ONNX
    Runtime's order for slices). For a few columns: stable sorts from the last column to the first, each a TopKV2
    over the reversed keys, whose lower-index-first tie rule makes it stable. Otherwise each row's rank is the
    number of rows below it, decided at the first column where two rows differ: n * n * width comparisons, but a
    fixed number of ops whatever the width."""
    if rows.dtype == tf.bool:
        rows = tf.cast(rows, tf.uint8)
    if width is not None and width <= MAX_SORT_COLUMNS:
        order = tf.range(tf.shape(rows)[0])
        for c in reversed(range(width)):
            keys = _descending(tf.gather(rows[:, c], order))
            order = tf.gather(order, tf.math.top_k(keys, tf.size(keys), sorted=True).indices)
        return order
    differ = tf.cast(tf.not_equal(rows[:, None, :], rows[None, :, :]), tf.int32)
    first = tf.argmax(differ, axis=2)  # symmetric in the two rows; 0 on the diagonal
    at_first = tf.gather(rows, first, batch_dims=1)  # [a, b]: row a's value where rows a and b first differ
    below = tf.cast(at_first < tf.transpose(at_first), tf.int32)  # [a, b]: row a sorts before row b
    return tf.math.invert_permutation(tf.reduce_sum(below, axis=0))


@op("Unique", since=11)
def unique(ctx: EmitContext, node: Node) -> None:
    """UniqueWithCountsV2 over the slices along `axis` (moved first and flattened to rows; single elements when no
    axis is given) gives the values, inverse indices and counts in first-occurrence order, i.e. sorted=0. The
    first-occurrence indices are the least position per unique slice. sorted=1 then reorders all four outputs by
    a lexicographic sort of the unique slices."""
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs.get("axis")
    if axis is None:
        rows = tf.reshape(x, [-1, 1])
    else:
        axis %= x.shape.rank
        moved = tf.transpose(x, [axis] + [d for d in range(x.shape.rank) if d != axis]) if axis else x
        rows = tf.reshape(moved, tf.stack([tf.shape(moved, out_type=tf.int64)[0], -1]))
        rows.set_shape([None, int(np.prod(moved.shape[1:])) if moved.shape[1:].is_fully_defined() else None])
    y, inverse, counts = tf.raw_ops.UniqueWithCountsV2(x=rows, axis=tf.constant([0], tf.int64), out_idx=tf.int64)
    n_unique = tf.shape(y, out_type=tf.int64)[0]
    first = tf.math.unsorted_segment_min(tf.range(tf.shape(rows, out_type=tf.int64)[0]), inverse, n_unique)
    if node.attrs["sorted"]:
        order = _lexsort(y, rows.shape[1])
        y, first, counts = (tf.gather(t, order) for t in (y, first, counts))
        inverse = tf.gather(tf.math.invert_permutation(order), inverse)
    if axis is None:
        y = tf.reshape(y, [-1])
    else:
        y = tf.reshape(y, tf.concat([[-1], tf.shape(moved, out_type=tf.int64)[1:]], 0))
        if axis:
            y = tf.transpose(y, [*range(1, axis + 1), 0, *range(axis + 1, x.shape.rank)])
    for name, value in zip(node.outputs, (y, first, inverse, counts)):
        if name:
            ctx.set(name, value)
