"""Reductions, arg-reductions and softmax. Reductions remap their axes into the tensor's current layout."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext
from graphport.emit.tf.registry import Decline, op
from graphport.emit.tf.tensor import axes_of
from graphport.ir.graph import Node

_REDUCERS = {
    "ReduceMean": (tf.reduce_mean, 18), "ReduceSum": (tf.reduce_sum, 13), "ReduceMax": (tf.reduce_max, 18),
    "ReduceMin": (tf.reduce_min, 18), "ReduceProd": (tf.reduce_prod, 18),
    "ReduceL1": (lambda x, axis, keepdims: tf.reduce_sum(tf.abs(x), axis, keepdims), 18),
    "ReduceL2": (lambda x, axis, keepdims: tf.sqrt(tf.reduce_sum(tf.square(x), axis, keepdims)), 18),
    "ReduceSumSquare": (lambda x, axis, keepdims: tf.reduce_sum(tf.square(x), axis, keepdims), 18),
    "ReduceLogSum": (lambda x, axis, keepdims: tf.math.log(tf.reduce_sum(x, axis, keepdims)), 18),
    "ReduceLogSumExp": (tf.reduce_logsumexp, 18),
}


_BOOL_REDUCERS = {"ReduceMax": tf.reduce_any, "ReduceMin": tf.reduce_all}  # max/min over booleans


@op(*_REDUCERS)
def reduce_(ctx: EmitContext, node: Node) -> None:
    fn, since = _REDUCERS[node.op_type]
    name = node.inputs[0]
    rank = ctx.rank(name)
    keep = bool(node.attrs.get("keepdims", 1))
    x = ctx.raw(name)
    if x.dtype == tf.bool:
        if node.op_type not in _BOOL_REDUCERS:
            raise Decline(f"{node.op_type} over booleans")
        fn = _BOOL_REDUCERS[node.op_type]
    if ctx.graph.opset >= since and len(node.inputs) > 1 and node.inputs[1] and ctx.const(node.inputs[1]) is None:
        axes_t = ctx.onnx_order(node.inputs[1])
        n = axes_t.shape.num_elements()
        if n is None:
            raise Decline("runtime axes of unknown length (the output rank would be unknown)")
        if n:  # ONNX axes number the ONNX layout; TF takes negative axes too
            y = fn(ctx.onnx_order(name), axis=tf.reshape(axes_t, [-1]), keepdims=keep)
            y.set_shape([None] * (rank if keep else rank - n))
            ctx.set(node.outputs[0], y)
            return
        axes: list[int] | None = []
    else:
        axes = axes_of(ctx, node, since)
    if not axes:  # no axes reduce all, or with noop_with_empty_axes none (ReduceSumSquare then just squares)
        axes = [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    axes = sorted({a % rank for a in axes})
    perm = ctx.perm(name) or tuple(range(rank))
    y = fn(x, axis=[perm.index(a) for a in axes], keepdims=keep)
    if keep:
        ctx.set(node.outputs[0], y, ctx.perm(name))
        return
    rest = [a for a in perm if a not in axes]
    ctx.set(node.outputs[0], y, tuple(sorted(rest).index(a) for a in rest))


@op("ArgMax", "ArgMin")
def arg_reduce(ctx: EmitContext, node: Node) -> None:
    x = ctx.onnx_order(node.inputs[0])
    axis = node.attrs.get("axis", 0) % x.shape.rank
    if node.attrs.get("select_last_index", 0):
        x = tf.reverse(x, [axis])
    fn = tf.argmax if node.op_type == "ArgMax" else tf.argmin
    y = fn(x, axis=axis, output_type=tf.int64)
    if node.attrs.get("select_last_index", 0):
        y = tf.constant(x.shape[axis] - 1, tf.int64) - y if x.shape[axis] else tf.shape(x, tf.int64)[axis] - 1 - y
    if node.attrs.get("keepdims", 1):
        y = tf.expand_dims(y, axis)
    ctx.set(node.outputs[0], y)


@op("Softmax", "LogSoftmax", "Hardmax")
def softmax(ctx: EmitContext, node: Node) -> None:
    name = node.inputs[0]
    rank = ctx.rank(name)
    fn = {"Softmax": tf.nn.softmax, "LogSoftmax": tf.nn.log_softmax, "Hardmax": _hardmax}[node.op_type]
    if ctx.graph.opset >= 13:
        # TF's softmax on an inner axis transposes through a Range-built permutation, a constant subgraph that old
        # shape refiners evaluate at load: relabel the layout so the axis is last instead (a constant Transpose
        # that later layout changes may cancel).
        axis = node.attrs.get("axis", -1) % rank
        last = tuple(a for a in ctx.perm(name) or range(rank) if a != axis) + (axis,)
        ctx.set(node.outputs[0], fn(ctx.in_perm(name, last), axis=-1), last)
        return
    axis = node.attrs.get("axis", 1) % rank  # before opset 13: softmax over the flattened trailing axes
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


def _hardmax(x: tf.Tensor, axis: int) -> tf.Tensor:
    depth = x.shape[axis]
    if depth is None:
        raise Decline("Hardmax over a dynamic axis")
    return tf.one_hot(tf.argmax(x, axis=axis), depth, axis=axis, dtype=x.dtype)
