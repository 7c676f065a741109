"""MaxPool, AveragePool and the global pools, channels last.

AveragePool's divisor follows ONNX exactly (count_include_pad, ceil_mode) by dividing a VALID window sum by a
per-position count computed now in numpy, so no padding case needs a special kernel.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.emit.tf.spatial import lowest, onnx_pads, padding_mode, same_pads
from graphport.ir.graph import Node

_POOLS = {2: (tf.raw_ops.MaxPool, tf.raw_ops.AvgPool), 3: (tf.raw_ops.MaxPool3D, tf.raw_ops.AvgPool3D)}


def _prepare(ctx: EmitContext, node: Node):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise Decline("the Indices output of MaxPool")
    kernel = list(node.attrs["kernel_shape"])
    n = len(kernel)
    if n not in (1, 2, 3):
        raise Decline(f"{n}-D pooling")
    strides = list(node.attrs.get("strides", [1] * n))
    if any(d != 1 for d in node.attrs.get("dilations", [1] * n)):
        raise Decline("dilated pooling")
    x = ctx.channels_last(node.inputs[0])
    ceil = bool(node.attrs.get("ceil_mode"))  # an attribute from opset 10 on
    begin, end = onnx_pads(node, x.shape.as_list()[1:-1], kernel, strides, [1] * n, ceil and not runtime_ceil(node, x))
    if n == 1:
        x = tf.expand_dims(x, 1)
        kernel, strides, begin, end = [1] + kernel, [1] + strides, [0] + begin, [0] + end
    return x, kernel, strides, begin, end, n


def runtime_ceil(node: Node, x: tf.Tensor) -> bool:
    """A ceil_mode MaxPool over a dynamic spatial size: its extra end padding is known only at run time."""
    return node.op_type == "MaxPool" and bool(node.attrs.get("ceil_mode")) and None in x.shape.as_list()[1:-1]


def _ceil_max_pool(x: tf.Tensor, kernel: list[int], strides: list[int], begin: list[int], end: list[int]
                   ) -> tf.Tensor:
    """ceil_mode's windows over a size known at run time: `stride - 1` more rows of -inf at the end give every
    window that ceil rounds up to, and the slice drops the last one where it would start past the input and its
    begin padding (ONNX Runtime's and torch's rule): `min(ceil((size + pads - span) / s) + 1, ceil((size + b) / s))`."""
    fill = lowest(x.dtype)
    padded = tf.pad(x, [[0, 0], *[[b, e + s - 1] for b, e, s in zip(begin, end, strides)], [0, 0]],
                    constant_values=fill)
    pool = _POOLS[len(kernel)][0]
    y = pool(input=padded, ksize=[1, *kernel, 1], strides=[1, *strides, 1], padding="VALID")
    sizes = tf.shape(x)[1:-1]
    starts = tf.stack([(sizes[i] + b + s - 1) // s for i, (b, s) in enumerate(zip(begin, strides))])
    keep = tf.minimum(tf.shape(y)[1:-1], starts)
    return tf.slice(y, tf.zeros([len(kernel) + 2], tf.int32), tf.concat([[-1], keep, [-1]], 0))


def _finish(ctx: EmitContext, node: Node, y: tf.Tensor, n: int) -> None:
    ctx.set(node.outputs[0], tf.squeeze(y, [1]) if n == 1 else y, channels_last(n + 2))


@op("MaxPool")
def max_pool(ctx: EmitContext, node: Node) -> None:
    x, kernel, strides, begin, end, n = _prepare(ctx, node)
    if runtime_ceil(node, x):
        _finish(ctx, node, _ceil_max_pool(x, kernel, strides, begin, end), n)
        return
    x, padding = padding_mode(x, begin, end, kernel, strides, [1] * len(kernel), fill=lowest(x.dtype))
    pool = _POOLS[len(kernel)][0]
    _finish(ctx, node, pool(input=x, ksize=[1, *kernel, 1], strides=[1, *strides, 1], padding=padding), n)


@op("AveragePool")
def average_pool(ctx: EmitContext, node: Node) -> None:
    x, kernel, strides, begin, end, n = _prepare(ctx, node)
    pool = _POOLS[len(kernel)][1]
    ksize, st = [1, *kernel, 1], [1, *strides, 1]
    sizes = x.shape.as_list()[1:-1]
    include = bool(node.attrs.get("count_include_pad"))  # an attribute from AveragePool-7 on
    if not any(begin) and not any(end):
        _finish(ctx, node, _avg(pool, x, ksize, st, "VALID"), n)
        return
    if not include and None not in sizes and (begin, end) == tuple(map(list, same_pads(sizes, kernel, strides,
                                                                                         [1] * len(kernel)))):
        _finish(ctx, node, _avg(pool, x, ksize, st, "SAME"), n)
        return
    if None in sizes:
        raise Decline("padded AveragePool over a dynamic spatial size")
    # The node's own pads, without ceil_mode's extra: read them over the node's n axes, before 1-D's added axis.
    explicit_end = onnx_pads(node, sizes[-n:], kernel[-n:], strides[-n:], [1] * n)[1]
    if n == 1:
        explicit_end = [0] + explicit_end
    counted = np.zeros([s + b + e for s, b, e in zip(sizes, begin, end)], np.float64)
    lo = [0 if include else b for b in begin]
    hi = [b + s + (ee if include else 0) for b, s, ee in zip(begin, sizes, explicit_end)]
    counted[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    windows = np.lib.stride_tricks.sliding_window_view(counted, kernel)[tuple(slice(None, None, s) for s in strides)]
    count = windows.sum(axis=tuple(range(-len(kernel), 0)))
    scale = (np.prod(kernel) / count).astype(x.dtype.as_numpy_dtype)[None, ..., None]
    xp, _ = padding_mode(x, begin, end, kernel, strides, [1] * len(kernel), same_ok=False)
    y = _avg(pool, xp, ksize, st, "VALID") * tf.constant(scale)
    _finish(ctx, node, y, n)


def _avg(pool, x: tf.Tensor, ksize: list[int], strides: list[int], padding: str) -> tf.Tensor:
    """AvgPool names its input `value`, AvgPool3D names it `input`."""
    arg = "value" if pool is tf.raw_ops.AvgPool else "input"
    return pool(**{arg: x}, ksize=ksize, strides=strides, padding=padding)


@op("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: EmitContext, node: Node) -> None:
    x = ctx.channels_last(node.inputs[0])
    axes = list(range(1, x.shape.rank - 1))
    fn = tf.reduce_mean if node.op_type == "GlobalAveragePool" else tf.reduce_max
    ctx.set(node.outputs[0], fn(x, axis=axes, keepdims=True), channels_last(x.shape.rank))


@op("LpPool", since=11)
def lp_pool(ctx: EmitContext, node: Node) -> None:
    """(sum of |x|^p over each window)^(1/p): zero padding adds nothing to the sum, so it is a VALID average pool of
    |x|^p over the zero-padded input, times the window size."""
    x, kernel, strides, begin, end, n = _prepare(ctx, node)
    p = float(node.attrs["p"])
    dt = x.dtype.as_numpy_dtype
    powered = tf.pow(tf.abs(x), tf.constant(dt(p)))
    xp, _ = padding_mode(powered, begin, end, kernel, strides, [1] * len(kernel), same_ok=False)
    total = _avg(_POOLS[len(kernel)][1], xp, [1, *kernel, 1], [1, *strides, 1], "VALID") * \
        tf.constant(dt(np.prod(kernel)))
    _finish(ctx, node, tf.pow(total, tf.constant(dt(1.0 / p))), n)


@op("GlobalLpPool", since=2)
def global_lp_pool(ctx: EmitContext, node: Node) -> None:
    x = ctx.channels_last(node.inputs[0])
    dt = x.dtype.as_numpy_dtype
    p = float(node.attrs["p"])
    total = tf.reduce_sum(tf.pow(tf.abs(x), tf.constant(dt(p))), axis=list(range(1, x.shape.rank - 1)), keepdims=True)
    ctx.set(node.outputs[0], tf.pow(total, tf.constant(dt(1.0 / p))), channels_last(x.shape.rank))
