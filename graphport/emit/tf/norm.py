"""Normalisations. BatchNorm after a Conv is already folded by a pass; the rest run as channels-last arithmetic."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node
from graphport.ir.op_arithmetic import batchnorm_affine


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


def _group_stats(ctx: EmitContext, node: Node) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """x reshaped to [N, G, rest] (rest = C/G * spatial), normalised over `rest`, and the shape to restore."""
    x = ctx.onnx_order(node.inputs[0])
    groups = int(node.attrs["num_groups"])
    dims = x.shape.as_list()
    rest = int(np.prod(dims[1:])) // groups if None not in dims[1:] else -1
    grouped = tf.reshape(x, [-1 if dims[0] is None else dims[0], groups, rest]) if rest != -1 or dims[0] is not None \
        else tf.reshape(x, tf.stack([tf.shape(x)[0], groups, -1]))
    mean, var = tf.nn.moments(grouped, axes=[2], keepdims=True)
    normed = (grouped - mean) * tf.math.rsqrt(var + tf.constant(node.attrs["epsilon"], x.dtype))
    return x, normed, tf.shape(x) if None in dims else dims


@op("GroupNormalization", since=18)
def group_norm_18(ctx: EmitContext, node: Node) -> None:
    """GroupNormalization-18: scale and bias hold one value per group."""
    x, normed, shape = _group_stats(ctx, node)
    scale, bias = (tf.reshape(tf.cast(ctx.onnx_order(n), x.dtype), [1, -1, 1]) for n in node.inputs[1:3])
    ctx.set(node.outputs[0], tf.reshape(normed * scale + bias, shape))


@op("GroupNormalization", since=21)
def group_norm(ctx: EmitContext, node: Node) -> None:
    """GroupNormalization-21: statistics per group, scale and bias per channel."""
    x, normed, shape = _group_stats(ctx, node)
    rank = x.shape.rank
    scale, bias = (tf.reshape(tf.cast(ctx.onnx_order(n), x.dtype), [1, -1] + [1] * (rank - 2))
                   for n in node.inputs[1:3])
    ctx.set(node.outputs[0], tf.reshape(normed, shape) * scale + bias)


@op("RMSNormalization", since=23)
def rms_norm(ctx: EmitContext, node: Node) -> None:
    """x / sqrt(mean(x^2 over the axes from `axis` on) + epsilon) * scale, in float32 when stash_type asks."""
    x = ctx.onnx_order(node.inputs[0])
    rank = x.shape.rank
    axis = node.attrs["axis"] % rank
    work = tf.cast(x, tf.float32) if node.attrs["stash_type"] == 1 and x.dtype != tf.float64 else x
    ms = tf.reduce_mean(tf.square(work), axis=list(range(axis, rank)), keepdims=True)
    y = tf.cast(work * tf.math.rsqrt(ms + tf.constant(node.attrs["epsilon"], work.dtype)), x.dtype)
    ctx.set(node.outputs[0], y * tf.cast(ctx.onnx_order(node.inputs[1]), x.dtype))


@op("MeanVarianceNormalization", since=9)
def mean_variance_norm(ctx: EmitContext, node: Node) -> None:
    """ONNX's function body, term for term: (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)."""
    x = ctx.onnx_order(node.inputs[0])
    axes = [a % x.shape.rank for a in node.attrs["axes"]]
    mean = tf.reduce_mean(x, axes, keepdims=True)
    std = tf.sqrt(tf.reduce_mean(tf.square(x), axes, keepdims=True) - tf.square(mean))
    ctx.set(node.outputs[0], (x - mean) / (std + tf.constant(1e-9, x.dtype)))


@op("LpNormalization")
def lp_norm(ctx: EmitContext, node: Node) -> None:
    """x / ||x||_p along `axis` (p = 1 or 2); a zero norm gives zeros (ONNX-22 says so; older versions divided by 0,
    which no exporter relies on)."""
    x = ctx.onnx_order(node.inputs[0])
    p = int(node.attrs["p"])
    if p not in (1, 2):
        raise Decline(f"LpNormalization with p={p} (ONNX allows 1 and 2)")
    axis = node.attrs["axis"] % x.shape.rank
    norm = tf.reduce_sum(tf.abs(x), axis, keepdims=True) if p == 1 else \
        tf.sqrt(tf.reduce_sum(tf.square(x), axis, keepdims=True))
    ctx.set(node.outputs[0], tf.math.divide_no_nan(x, norm))


@op("LRN")
def lrn(ctx: EmitContext, node: Node) -> None:
    """Local response normalisation across channels. TF's LRN kernel takes a symmetric radius and alpha not divided
    by size; ONNX's window is asymmetric for an even size. So the window sum is a channels-last MatMul with a 0/1
    band matrix, exact for any size."""
    x = ctx.channels_last(node.inputs[0])
    channels = x.shape[-1]
    if channels is None:
        raise Decline("LRN over a channel count known only at run time")
    size = int(node.attrs["size"])
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    c = np.arange(channels)
    band = ((c[:, None] >= c[None, :] - lo) & (c[:, None] <= c[None, :] + hi)).astype(x.dtype.as_numpy_dtype)
    flat = tf.reshape(tf.square(x), [-1, channels])
    window = tf.reshape(tf.raw_ops.MatMul(a=flat, b=tf.constant(band)), tf.shape(x))
    dt = x.dtype.as_numpy_dtype
    denom = tf.pow(tf.constant(dt(node.attrs["bias"])) + tf.constant(dt(node.attrs["alpha"] / size)) * window,
                   tf.constant(dt(node.attrs["beta"])))
    ctx.set(node.outputs[0], x / denom, channels_last(x.shape.rank))
