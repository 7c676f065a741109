"""Normalisations. BatchNorm after a Conv is already folded by a pass; the rest run as channels-last arithmetic."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node
from graphport.passes.fuse import batchnorm_affine


def _channel_vector(v: np.ndarray, rank: int) -> np.ndarray:
    return v.reshape([1] * (rank - 1) + [-1])


def _channel_tensor(ctx: EmitContext, name: str, dtype: tf.DType, rank: int) -> tf.Tensor:
    """A per-channel vector (constant or runtime) shaped to broadcast over channels-last data."""
    return tf.reshape(tf.cast(ctx.onnx_order(name), dtype), [1] * (rank - 1) + [-1])


@op("BatchNormalization")
def batch_norm(ctx: EmitContext, node: Node) -> None:
    # training_mode exists from BatchNormalization-14 on; earlier training forms show as extra outputs
    if node.attrs.get("training_mode") or len([o for o in node.outputs if o]) > 1:
        raise Decline("BatchNormalization in training mode")
    rank = ctx.rank(node.inputs[0])
    x = ctx.channels_last(node.inputs[0]) if rank > 2 else ctx.onnx_order(node.inputs[0])
    eps = node.attrs["epsilon"]
    if any(ctx.const(i) is None for i in node.inputs[1:5]):  # runtime statistics: the same affine map, in-graph
        scale, beta, mean, var = (_channel_tensor(ctx, i, x.dtype, rank) for i in node.inputs[1:5])
        factor = scale * tf.math.rsqrt(var + tf.constant(eps, x.dtype))
        ctx.set(node.outputs[0], x * factor + (beta - mean * factor), channels_last(rank) if rank > 2 else None)
        return
    factor, shift = batchnorm_affine(*(ctx.static(i) for i in node.inputs[1:5]), eps)
    dt = x.dtype.as_numpy_dtype
    y = x * tf.constant(_channel_vector(factor, rank).astype(dt)) + tf.constant(_channel_vector(shift, rank).astype(dt))
    ctx.set(node.outputs[0], y, channels_last(rank) if rank > 2 else None)


@op("InstanceNormalization")
def instance_norm(ctx: EmitContext, node: Node) -> None:
    x = ctx.channels_last(node.inputs[0])
    rank = x.shape.rank
    scale, bias = (_channel_tensor(ctx, i, x.dtype, rank) for i in node.inputs[1:3])
    mean, var = tf.nn.moments(x, axes=list(range(1, rank - 1)), keepdims=True)
    eps = tf.constant(node.attrs["epsilon"], x.dtype)
    y = (x - mean) * tf.math.rsqrt(var + eps) * scale + bias
    ctx.set(node.outputs[0], y, channels_last(rank))


@op("LayerNormalization")
def layer_norm(ctx: EmitContext, node: Node) -> None:
    """Normalisation over the trailing axes from `axis` on, computed over ONE last axis: with oneDNN on, Grappler
    rewrites this moments pattern into _MklLayerNorm, which normalises the last axis only, so a pattern over two
    axes came out wrong (off by 6 on the fuzzer's case; docs/onednn.md). Several static trailing axes are merged
    into one by a Reshape, normalised, and reshaped back."""
    x = ctx.onnx_order(node.inputs[0])
    rank = x.shape.rank
    axis = node.attrs["axis"] % rank
    tail = x.shape.as_list()[axis:]
    merge = len(tail) > 1 and None not in tail
    params = [ctx.onnx_order(n) for n in node.inputs[1:] if n]
    if merge:
        width, head = int(np.prod(tail)), x.shape.as_list()[:axis]
        if head.count(None) <= 1:  # the usual case: only the batch is unknown, so no Shape is read
            head = [-1 if d is None else d for d in head]
            flat, shape, kept = [*head, width], [*head, *tail], [*head, *[1] * len(tail)]
        else:
            dyn = tf.shape(x)
            flat = tf.concat([dyn[:axis], [width]], 0)
            shape, kept = dyn, tf.concat([dyn[:axis], tf.ones([len(tail)], dyn.dtype)], 0)
        x = tf.reshape(x, flat)
        params = [tf.reshape(tf.broadcast_to(p, tail), [width]) for p in params]
    mean, var = tf.nn.moments(x, axes=[-1] if merge else list(range(axis, rank)), keepdims=True)
    inv_std = tf.math.rsqrt(var + tf.constant(node.attrs["epsilon"], x.dtype))
    y = (x - mean) * inv_std * params[0]
    if len(params) > 1:
        y = y + params[1]
    if merge:
        y, mean, inv_std = tf.reshape(y, shape), tf.reshape(mean, kept), tf.reshape(inv_std, kept)
    for name, t in zip(node.outputs[1:], (mean, inv_std)):  # optional Mean and InvStdDev, kept-dims shaped
        if name:
            ctx.set(name, t)
    ctx.set(node.outputs[0], y)
