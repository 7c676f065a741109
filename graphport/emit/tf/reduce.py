"""Reductions, the CumSum/CumProd scans, arg-reductions and softmax. All remap their axes into the tensor's current layout."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.emit.tf.tensor import runtime_input, static_axes
from graphport.ir.graph import Node

_REDUCERS = {
    "ReduceMean": tf.reduce_mean, "ReduceSum": tf.reduce_sum, "ReduceMax": tf.reduce_max,
    "ReduceMin": tf.reduce_min, "ReduceProd": tf.reduce_prod,
    "ReduceL1": lambda x, axis, keepdims: tf.reduce_sum(tf.abs(x), axis, keepdims),
    "ReduceL2": lambda x, axis, keepdims: tf.sqrt(tf.reduce_sum(tf.square(x), axis, keepdims)),
    "ReduceSumSquare": lambda x, axis, keepdims: tf.reduce_sum(tf.square(x), axis, keepdims),
    "ReduceLogSum": lambda x, axis, keepdims: tf.math.log(tf.reduce_sum(x, axis, keepdims)),
    "ReduceLogSumExp": tf.reduce_logsumexp,
}


_BOOL_REDUCERS = {"ReduceMax": tf.reduce_any, "ReduceMin": tf.reduce_all}  # max/min over booleans


def _reducer(ctx: EmitContext, node: Node):
    if ctx.raw(node.inputs[0]).dtype != tf.bool:
        return _REDUCERS[node.op_type]
    if node.op_type not in _BOOL_REDUCERS:
        raise Decline(f"{node.op_type} over booleans")
    return _BOOL_REDUCERS[node.op_type]


@op(*_REDUCERS)
def reduce_axes_attribute(ctx: EmitContext, node: Node) -> None:
    """Before ReduceSum-13 and the other reductions' version 18, axes are an attribute."""
    _reduce(ctx, node, node.attrs.get("axes"), noop_if_empty=False)


def reduce_axes_input(ctx: EmitContext, node: Node) -> None:
    """Axes as an optional input, a constant or (of known length) a runtime vector; noop_with_empty_axes."""
    noop = bool(node.attrs["noop_with_empty_axes"])
    if not runtime_input(ctx, node, 1):
        _reduce(ctx, node, static_axes(ctx, node), noop)
        return
    name = node.inputs[0]
    rank, keep = ctx.rank(name), bool(node.attrs["keepdims"])
    axes_t = ctx.onnx_order(node.inputs[1])
    n = axes_t.shape.num_elements()
    if n is None:
        raise Decline("runtime axes of unknown length (the output rank would be unknown)")
    if not n:
        _reduce(ctx, node, [], noop)
        return
    # ONNX axes number the ONNX layout; TF takes negative axes too
    y = _reducer(ctx, node)(ctx.onnx_order(name), axis=tf.reshape(axes_t, [-1]), keepdims=keep)
    y.set_shape([None] * (rank if keep else rank - n))
    ctx.set(node.outputs[0], y)


op("ReduceSum", since=13)(reduce_axes_input)
op(*(r for r in _REDUCERS if r != "ReduceSum"), since=18)(reduce_axes_input)


def _reduce(ctx: EmitContext, node: Node, axes: list[int] | None, noop_if_empty: bool) -> None:
    """Reduce over constant `axes` in the input's own layout: the axes are remapped, the data never moved."""
    fn = _reducer(ctx, node)
    name = node.inputs[0]
    rank, keep = ctx.rank(name), bool(node.attrs["keepdims"])
    if not axes:  # no axes reduce all, or with noop_with_empty_axes none (ReduceSumSquare then just squares)
        axes = [] if noop_if_empty else list(range(rank))
    axes = sorted({a % rank for a in axes})
    perm = ctx.perm(name) or tuple(range(rank))
    y = fn(ctx.raw(name), axis=[perm.index(a) for a in axes], keepdims=keep)
    if keep:
        ctx.set(node.outputs[0], y, ctx.perm(name))
        return
    rest = [a for a in perm if a not in axes]
    ctx.set(node.outputs[0], y, tuple(sorted(rest).index(a) for a in rest))


@op("ArgMax", "ArgMin")
def arg_reduce(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs["axis"] % x.shape.rank
    last = bool(node.attrs.get("select_last_index"))  # an attribute from opset 12 on
    if last:
        x = tf.reverse(x, [axis])
    fn = tf.argmax if node.op_type == "ArgMax" else tf.argmin
    y = fn(x, axis=axis, output_type=tf.int64)
    if last:
        y = tf.constant(x.shape[axis] - 1, tf.int64) - y if x.shape[axis] else tf.shape(x, tf.int64)[axis] - 1 - y
    if node.attrs["keepdims"]:
        y = tf.expand_dims(y, axis)
    ctx.set(node.outputs[0], y)


_SOFTMAX = {"Softmax": tf.nn.softmax, "LogSoftmax": tf.nn.log_softmax}


def _softmax_fn(node: Node):
    return _SOFTMAX.get(node.op_type, _hardmax)


@op("Softmax", "LogSoftmax", "Hardmax")
def softmax_flattened(ctx: EmitContext, node: Node) -> None:
    """Before opset 13: softmax over the input flattened to 2-D at `axis` (all trailing axes together)."""
    name = node.inputs[0]
    rank = ctx.rank(name)
    axis = node.attrs["axis"] % rank
    fn = _softmax_fn(node)
    x = ctx.onnx_order(name)
    if axis == rank - 1:
        ctx.set(node.outputs[0], fn(x, axis=-1))
        return
    dims = x.shape.as_list()
    tail = dims[axis:]
    if None in tail:
        raise Decline("coerced softmax over dynamic trailing axes")
    flat = tf.reshape(x, [-1, int(np.prod(tail))])
    ctx.set(node.outputs[0], tf.reshape(fn(flat, axis=-1), tf.shape(x)))


@op("Softmax", "LogSoftmax", "Hardmax", since=13)
def softmax(ctx: EmitContext, node: Node) -> None:
    """From opset 13: over the one axis. TF's softmax on an inner axis transposes through a Range-built
    permutation, a constant subgraph that old shape refiners evaluate at load: relabel the layout so the axis is
    last instead (a constant Transpose that later layout changes may cancel)."""
    name = node.inputs[0]
    rank = ctx.rank(name)
    axis = node.attrs["axis"] % rank
    last = tuple(a for a in ctx.perm(name) or range(rank) if a != axis) + (axis,)
    ctx.set(node.outputs[0], _softmax_fn(node)(ctx.in_perm(name, last), axis=-1), last)


def _hardmax(x: tf.Tensor, axis: int) -> tf.Tensor:
    depth = x.shape[axis]
    if depth is None:
        raise Decline("Hardmax over a dynamic axis")
    return tf.one_hot(tf.argmax(x, axis=axis), depth, axis=axis, dtype=x.dtype)


@op("CumSum", since=11)
def cumsum(ctx: EmitContext, node: Node) -> None:
    """TF's Cumsum has ONNX's exclusive and reverse."""
    _scan(ctx, node, tf.raw_ops.Cumsum)


@op("CumProd", since=26)
def cumprod(ctx: EmitContext, node: Node) -> None:
    """TF's Cumprod has ONNX's exclusive and reverse."""
    _scan(ctx, node, tf.raw_ops.Cumprod)


def _scan(ctx: EmitContext, node: Node, kernel) -> None:
    """A constant axis runs on the stored layout, mapped into it; an axis fed at run time runs on ONNX's order."""
    flags = {"exclusive": bool(node.attrs["exclusive"]), "reverse": bool(node.attrs["reverse"])}
    if runtime_input(ctx, node, 1):
        axis = tf.reshape(ctx.onnx_order(node.inputs[1]), [])
        ctx.set(node.outputs[0], kernel(x=ctx.onnx_order(node.inputs[0]), axis=axis, **flags))
        return
    x = ctx.raw(node.inputs[0])
    perm = ctx.perm(node.inputs[0]) or tuple(range(x.shape.rank))
    axis = int(np.asarray(ctx.static(node.inputs[1])).ravel()[0]) % x.shape.rank
    ctx.set(node.outputs[0], kernel(x=x, axis=tf.constant(perm.index(axis), tf.int32), **flags),
            ctx.perm(node.inputs[0]))
