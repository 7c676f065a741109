"""MaxPool, AveragePool and the global pools, channels last.

AveragePool's divisor follows ONNX exactly (count_include_pad, ceil_mode) by dividing a VALID window sum by a
per-position count: computed now in numpy over a static size, or over a dynamic one (the samples or frames axis of an
audio model) by pooling a one-channel mask padded like the input, so no padding case needs a special kernel.
TF's pools take no dilations: a dilated window is reduced over its taps, one strided slice each.
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
    dilations = list(node.attrs.get("dilations", [1] * n))
    x = ctx.channels_last(node.inputs[0])
    ceil = bool(node.attrs.get("ceil_mode"))  # an attribute from opset 10 on
    begin, end = onnx_pads(node, x.shape.as_list()[1:-1], kernel, strides, dilations,
                           ceil and not runtime_ceil(node, x))
    if n == 1:
        x = tf.expand_dims(x, 1)
        kernel, strides, dilations, begin, end = [1] + kernel, [1] + strides, [1] + dilations, [0] + begin, [0] + end
    return _Pool(x, kernel, strides, dilations, begin, end, n)


class _Pool:
    """One pooling node's channels-last input and window, 1-D already given a unit height."""

    def __init__(self, x: tf.Tensor, kernel: list[int], strides: list[int], dilations: list[int], begin: list[int],
                 end: list[int], n: int):
        self.x, self.kernel, self.strides, self.dilations = x, kernel, strides, dilations
        self.begin, self.end, self.n = begin, end, n

    @property
    def dilated(self) -> bool:
        return any(d != 1 for d in self.dilations)

    def windows(self, x: tf.Tensor, kind: str) -> tf.Tensor:
        """VALID windows of `x` reduced by `kind` ('max' or 'avg'): TF's pool, or, dilated, the max or mean of one
        strided slice per tap (slice ends count from the end, so a dynamic size needs no shape arithmetic)."""
        if not self.dilated:
            pool = _POOLS[len(self.kernel)][0 if kind == "max" else 1]
            ksize, st = [1, *self.kernel, 1], [1, *self.strides, 1]
            return pool(input=x, ksize=ksize, strides=st, padding="VALID") if kind == "max" else \
                _avg(pool, x, ksize, st, "VALID")
        taps = []
        for offsets in np.ndindex(*self.kernel):
            index = [slice(None)]
            for k, s, d, j in zip(self.kernel, self.strides, self.dilations, offsets):
                tail = (k - 1 - j) * d
                index.append(slice(j * d, -tail if tail else None, s))
            taps.append(x[tuple(index + [slice(None)])])
        if kind == "max":
            return tf.reduce_max(tf.stack(taps), axis=0)
        return tf.add_n(taps) / tf.constant(len(taps), x.dtype)

    def padded(self, x: tf.Tensor, fill: float, ceil_extra: bool) -> tf.Tensor:
        """`x` with the node's pads, plus `stride - 1` at each end where ceil_mode's windows are known only at run
        time (`keep_started` then drops the surplus)."""
        ends = [e + (s - 1 if ceil_extra else 0) for e, s in zip(self.end, self.strides)]
        if not any(self.begin) and not any(ends):
            return x
        return tf.pad(x, [[0, 0], *zip(self.begin, ends), [0, 0]], constant_values=tf.constant(fill, x.dtype))

    def keep_started(self, y: tf.Tensor) -> tf.Tensor:
        """ceil_mode over a size known at run time: drop the last window where it would start past the input and
        its begin padding (ONNX Runtime's and torch's rule): `min(ceil((size + pads - span) / s) + 1,
        ceil((size + b) / s))` windows."""
        sizes = tf.shape(self.x)[1:-1]
        starts = tf.stack([(sizes[i] + b + s - 1) // s for i, (b, s) in enumerate(zip(self.begin, self.strides))])
        keep = tf.minimum(tf.shape(y)[1:-1], starts)
        return tf.slice(y, tf.zeros([len(self.kernel) + 2], tf.int32), tf.concat([[-1], keep, [-1]], 0))


def runtime_ceil(node: Node, x: tf.Tensor) -> bool:
    """A ceil_mode MaxPool or AveragePool over a dynamic spatial size: its extra end padding is known only at run
    time."""
    return node.op_type in ("MaxPool", "AveragePool") and bool(node.attrs.get("ceil_mode")) and \
        None in x.shape.as_list()[1:-1]


def _finish(ctx: EmitContext, node: Node, y: tf.Tensor, n: int) -> None:
    ctx.set(node.outputs[0], tf.squeeze(y, [1]) if n == 1 else y, channels_last(n + 2))


@op("MaxPool")
def max_pool(ctx: EmitContext, node: Node) -> None:
    p = _prepare(ctx, node)
    ceil = runtime_ceil(node, p.x)
    if ceil or p.dilated:
        y = p.windows(p.padded(p.x, lowest(p.x.dtype), ceil), "max")
        _finish(ctx, node, p.keep_started(y) if ceil else y, p.n)
        return
    x, padding = padding_mode(p.x, p.begin, p.end, p.kernel, p.strides, p.dilations, fill=lowest(p.x.dtype))
    pool = _POOLS[len(p.kernel)][0]
    _finish(ctx, node, pool(input=x, ksize=[1, *p.kernel, 1], strides=[1, *p.strides, 1], padding=padding), p.n)


@op("AveragePool")
def average_pool(ctx: EmitContext, node: Node) -> None:
    p = _prepare(ctx, node)
    x, n = p.x, p.n
    pool = _POOLS[len(p.kernel)][1]
    ksize, st = [1, *p.kernel, 1], [1, *p.strides, 1]
    sizes = x.shape.as_list()[1:-1]
    include = bool(node.attrs.get("count_include_pad"))  # an attribute from AveragePool-7 on
    if not any(p.begin) and not any(p.end) and not runtime_ceil(node, x):
        _finish(ctx, node, p.windows(x, "avg"), n)
        return
    # The node's own pads, without ceil_mode's extra: read them over the node's n axes, before 1-D's added axis.
    explicit_end = onnx_pads(node, sizes[-n:], p.kernel[-n:], p.strides[-n:], p.dilations[-n:])[1]
    if n == 1:
        explicit_end = [0] + explicit_end
    if None in sizes or p.dilated:
        _finish(ctx, node, _masked_average(node, p, include, explicit_end), n)
        return
    if not include and (p.begin, p.end) == tuple(map(list, same_pads(sizes, p.kernel, p.strides, p.dilations))):
        _finish(ctx, node, _avg(pool, x, ksize, st, "SAME"), n)
        return
    counted = np.zeros([s + b + e for s, b, e in zip(sizes, p.begin, p.end)], np.float64)
    lo = [0 if include else b for b in p.begin]
    hi = [b + s + (ee if include else 0) for b, s, ee in zip(p.begin, sizes, explicit_end)]
    counted[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    windows = np.lib.stride_tricks.sliding_window_view(counted, p.kernel)[tuple(slice(None, None, s)
                                                                                for s in p.strides)]
    count = windows.sum(axis=tuple(range(-len(p.kernel), 0)))
    scale = (np.prod(p.kernel) / count).astype(x.dtype.as_numpy_dtype)[None, ..., None]
    xp, _ = padding_mode(x, p.begin, p.end, p.kernel, p.strides, p.dilations, same_ok=False)
    _finish(ctx, node, _avg(pool, xp, ksize, st, "VALID") * tf.constant(scale), n)


def _masked_average(node: Node, p: _Pool, include: bool, explicit_end: list[int]) -> tf.Tensor:
    """The window mean of the zero-padded input over the window mean of a one-channel mask that is 1 where ONNX
    counts a position: the input, and with count_include_pad its explicit pads too, never ceil_mode's overhang."""
    ceil = runtime_ceil(node, p.x)
    ones = tf.ones_like(p.x[:1, ..., :1])
    if include:
        counted = tf.pad(ones, [[0, 0], *zip(p.begin, explicit_end), [0, 0]], constant_values=1.0)
        overhang = [e - ee + (s - 1 if ceil else 0) for e, ee, s in zip(p.end, explicit_end, p.strides)]
        mask = tf.pad(counted, [[0, 0], *[(0, o) for o in overhang], [0, 0]]) if any(overhang) else counted
    else:
        mask = p.padded(ones, 0.0, ceil)
    # a dilated window can fall wholly in the padding: ONNX Runtime gives it 0, as DivNoNan does
    y = tf.math.divide_no_nan(p.windows(p.padded(p.x, 0.0, ceil), "avg"), p.windows(mask, "avg"))
    return p.keep_started(y) if ceil else y


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
    """(sum of |x|^p over each window)^(1/p): zero padding adds nothing to the sum, so it is the VALID window mean
    of |x|^p over the zero-padded input (dilated: over its taps), times the window size."""
    pool = _prepare(ctx, node)
    dt = pool.x.dtype.as_numpy_dtype
    p = float(node.attrs["p"])
    powered = tf.pow(tf.abs(pool.x), tf.constant(dt(p)))
    total = pool.windows(pool.padded(powered, 0.0, False), "avg") * tf.constant(dt(np.prod(pool.kernel)))
    _finish(ctx, node, tf.pow(total, tf.constant(dt(1.0 / p))), pool.n)


@op("GlobalLpPool", since=2)
def global_lp_pool(ctx: EmitContext, node: Node) -> None:
    x = ctx.channels_last(node.inputs[0])
    dt = x.dtype.as_numpy_dtype
    p = float(node.attrs["p"])
    total = tf.reduce_sum(tf.pow(tf.abs(x), tf.constant(dt(p))), axis=list(range(1, x.shape.rank - 1)), keepdims=True)
    ctx.set(node.outputs[0], tf.pow(total, tf.constant(dt(1.0 / p))), channels_last(x.shape.rank))
