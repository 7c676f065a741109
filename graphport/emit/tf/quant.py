"""Quantized ops, computed as ONNX Runtime computes them (round half to even, saturation).

TF 2.5's own quantized kernels (QuantizedConv2D and friends) requantize with float min/max ranges, not ONNX's scale
and zero point, and its integer Conv2D/MatMul kernels are missing or slow on CPU. So everything runs on float32
kernels, kept exact: 8-bit operands minus their zero points are integers of at most 255 in magnitude, products of
two such are exact, and float32 adds integers exactly while every partial sum stays below 2^24. Each integer
product checks that bound at conversion time (from the constant weights where known, else from the types' ranges)
and, where it could be exceeded, splits the activation into two base-16 digits whose products are each exact and
are recombined in int32. Rounding is tf.round (half to even), saturation a clamp in float before the final Cast.

One handler per op: the later versions of QuantizeLinear/DequantizeLinear (13 axis, 19 saturate and float8, 21
block_size, output_dtype, 16- and 4-bit types, 23 precision and output_dtype, 24/25 more types) only add attributes
and types whose defaults keep the earlier behaviour, so reading them with those defaults covers every version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import tensorflow as tf
from onnx import TensorProto, helper

from graphport.emit.tf.context import EmitContext, channels_last, opt_input
from graphport.emit.tf.conv import _grouped
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.linalg import _broadcast_batch
from graphport.emit.tf.registry import op
from graphport.emit.tf.spatial import onnx_pads, padding_mode, spatial_attrs
from graphport.ir.graph import Node

# Integer types TF can Cast to and from (4-bit ones only to and from other integers), with their saturation ranges.
_INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
               "int4": (-8, 7), "uint4": (0, 15)}
_FLOAT8 = ("float8_e4m3fn", "float8_e5m2")  # the float8 types TF has; FNUZ, E8M0, float4/6 and 2-bit it has not
_EXACT = float(2 ** 24)  # float32 holds every integer below this exactly
_DIGIT = 16  # base of the split: digits of an 8-bit difference lie in [-16, 15]


def _dtype_of(ctx: EmitContext, name: str) -> np.dtype:
    arr = ctx.const(name)
    return arr.dtype if arr is not None else np.dtype(ctx.raw(name).dtype.as_numpy_dtype)


def _to_float(t: tf.Tensor) -> tf.Tensor:
    """float32 values of `t`; TF casts 4-bit integers only to other integers, so those go through int32."""
    if t.dtype.name in ("int4", "uint4"):
        t = tf.cast(t, tf.int32)
    return tf.cast(t, tf.float32)


def _along(v: np.ndarray | tf.Tensor, rank: int, axis: int) -> np.ndarray | tf.Tensor:
    """A scale or zero point broadcastable against a rank-`rank` tensor: one element is a scalar, a vector lies along
    `axis` (per-axis, per-row or per-column quantization), anything else already has the operand's rank."""
    reshape = np.reshape if isinstance(v, np.ndarray) else tf.reshape
    size = v.size if isinstance(v, np.ndarray) else v.shape.num_elements()
    if size == 1:
        return reshape(v, [])
    if len(v.shape) != 1:
        return v
    shape = [1] * rank
    shape[axis] = -1
    return reshape(v, shape)


def _saturate(v: tf.Tensor, dtype: np.dtype) -> tf.Tensor:
    """Integer-valued float32 `v` clamped to `dtype`'s range and cast to it."""
    lo, hi = _INT_RANGES[dtype.name]
    q = tf.minimum(tf.maximum(v, float(lo)), float(hi))
    if dtype.name in ("int4", "uint4"):
        q = tf.cast(q, tf.int32)
    return tf.cast(q, tf.as_dtype(dtype))


def _check_type(dtype: np.dtype, what: str) -> None:
    if dtype.name not in _INT_RANGES and dtype.name not in _FLOAT8 and dtype != np.int32:
        raise Decline(f"{what} of type {dtype.name} (TF has no such dtype or no Cast kernel for it)")


class _Elementwise:
    """Operands of QuantizeLinear/DequantizeLinear: x in the layout it is stored in (NHWC after a conv, so a QDQ
    chain between convs needs no Transpose), scale and zero point shaped to broadcast against it. Blocked
    quantization works in the ONNX order, where the blocks are repeated along `axis`."""

    def __init__(self, ctx: EmitContext, node: Node):
        self.ctx, self.node = ctx, node
        self.block = int(node.attrs.get("block_size", 0))
        if self.block:
            self.x, self.perm = ctx.onnx_order(node.inputs[0]), None
        else:
            self.x, self.perm = ctx.raw(node.inputs[0]), ctx.perm(node.inputs[0])
        rank = self.x.shape.rank
        self.axis = int(node.attrs.get("axis", 1)) % max(rank, 1)

    def param(self, k: int) -> tf.Tensor:
        t = self.ctx.onnx_order(self.node.inputs[k])
        rank = self.x.shape.rank
        if not self.block:
            return _along(t, rank, self.perm.index(self.axis) if self.perm else self.axis)
        size = self.x.shape[self.axis]
        if size is None:
            raise Decline("blocked quantization along an axis of unknown size")
        t = tf.repeat(t, self.block, axis=self.axis)
        return tf.slice(t, [0] * rank, [size if i == self.axis else -1 for i in range(rank)])

    def set(self, y: tf.Tensor) -> None:
        self.ctx.set(self.node.outputs[0], y, self.perm)


@op("QuantizeLinear", since=10)
def quantize_linear(ctx: EmitContext, node: Node) -> None:
    """y = saturate(round(x / scale) + zero_point), the division in float32 as ORT does it (also for float16
    inputs); float8 targets ignore the zero point and saturate to their largest finite value unless saturate=0."""
    if opt_input(node, 2):
        target = _dtype_of(ctx, node.inputs[2])
    else:
        code = node.attrs.get("output_dtype", 0)
        target = np.dtype(helper.tensor_dtype_to_np_dtype(code) if code else np.uint8)
    _check_type(target, "quantization to")
    if target == np.int32:
        raise Decline("quantization to int32")
    if node.attrs.get("precision", 0) not in (0, TensorProto.FLOAT):
        raise Decline("QuantizeLinear precision other than float32")
    e = _Elementwise(ctx, node)
    v = _to_float(e.x) / _to_float(e.param(1))
    if target.name in _FLOAT8:
        if node.attrs.get("saturate", 1):  # +-inf and out of range to the largest finite value; NaN stays NaN
            top = tf.constant(float(ml_dtypes.finfo(target).max))
            v = tf.where(v > top, top, tf.where(v < -top, -top, v))
        e.set(tf.cast(v, tf.as_dtype(target)))
        return
    q = tf.round(v)
    if opt_input(node, 2):
        q = q + _to_float(e.param(2))
    e.set(_saturate(q, target))


@op("DequantizeLinear", since=10)
def dequantize_linear(ctx: EmitContext, node: Node) -> None:
    """y = (x - zero_point) * scale in float32, rounded once to the output type (the scale's, or output_dtype).

    8- and 16-bit differences are exact in float32; int32 ones are taken in int32 first, as ORT does."""
    source = _dtype_of(ctx, node.inputs[0])
    _check_type(source, "dequantization")
    code = node.attrs.get("output_dtype", 0)
    out = tf.as_dtype(helper.tensor_dtype_to_np_dtype(code)) if code else ctx.raw(node.inputs[1]).dtype
    e = _Elementwise(ctx, node)
    has_zp = bool(opt_input(node, 2)) and source.name not in _FLOAT8  # float8 zero points must be 0
    if source == np.int32:
        v = tf.cast(e.x - e.param(2) if has_zp else e.x, tf.float32)
    else:
        v = _to_float(e.x) - _to_float(e.param(2)) if has_zp else _to_float(e.x)
    e.set(tf.cast(v * _to_float(e.param(1)), out))


@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: EmitContext, node: Node) -> None:
    """uint8 over [min(x, 0), max(x, 0)]. As in ORT, an all-zero x gets scale 1 (the ONNX reference: 1/255)."""
    x = ctx.raw(node.inputs[0])
    lo, hi = tf.minimum(tf.reduce_min(x), 0.0), tf.maximum(tf.reduce_max(x), 0.0)
    scale = tf.where(tf.equal(hi, lo), 1.0, (hi - lo) / 255.0)
    zp = tf.round(tf.minimum(tf.maximum(-lo / scale, 0.0), 255.0))
    ctx.set(node.outputs[0], _saturate(tf.round(x / scale) + zp, np.dtype(np.uint8)), ctx.perm(node.inputs[0]))
    ctx.set(node.outputs[1], scale)
    ctx.set(node.outputs[2], tf.cast(zp, tf.uint8))


# ---- integer products -----------------------------------------------------------------------------------------

@dataclass
class _Centred:
    """An 8-bit operand minus its zero point, as float32: a constant array where both are known at conversion time
    (folded now, and bounding the exactness check by its real values), else a runtime tensor."""

    value: np.ndarray | tf.Tensor
    peak: float  # largest possible |value|

    def l1(self, reduce: tuple[int, ...]) -> float:
        """Largest sum of |value| over the `reduce` axes (the inputs of one output), bounded by the type if unknown."""
        if isinstance(self.value, np.ndarray):
            return float(np.abs(self.value).sum(axis=reduce).max()) if self.value.size else 0.0
        dims = [self.value.shape[a] for a in reduce]
        if None in dims:
            raise Decline("integer product over an inner dimension of unknown size")
        return float(np.prod(dims)) * self.peak


def _centred(ctx: EmitContext, name: str, zp_name: str, axis: int, value: tf.Tensor | None = None) -> _Centred:
    """`name` minus zero point `zp_name` (a vector of which lies along `axis`); `value` is `name` already laid out."""
    dtype = _dtype_of(ctx, name)
    if dtype.name not in ("int8", "uint8"):
        raise Decline(f"integer product of {dtype.name} operands (8-bit integers only)")
    lo, hi = _INT_RANGES[dtype.name]
    arr, zp = ctx.const(name), ctx.const(zp_name) if zp_name else np.zeros((), dtype)
    if zp is not None:
        peak = float(np.max(np.maximum(zp.astype(np.float32) - lo, hi - zp.astype(np.float32))))
        if arr is not None and value is None:
            arr = arr.astype(np.float32) - _along(zp.astype(np.float32), arr.ndim, axis)
            return _Centred(arr, float(np.abs(arr).max()) if arr.size else 0.0)
    else:
        peak = float(hi - lo)
    x = value if value is not None else ctx.onnx_order(name)
    if not zp_name:
        return _Centred(_to_float(x), peak)
    zp_t = tf.constant(zp.astype(np.float32)) if zp is not None else _to_float(ctx.onnx_order(zp_name))
    return _Centred(_to_float(x) - _along(zp_t, x.shape.rank, axis), peak)


def _accumulate(product: Callable[[tf.Tensor], tf.Tensor], a: _Centred, l1: float, axis: int,
                bias: np.ndarray | tf.Tensor | None = None) -> tf.Tensor:
    """`product(a)` (+ int32 `bias`) exactly, for a `product` linear in `a` whose outputs each sum at most `l1` of
    the other operand's |values| times one of `a`'s. float32 when every partial sum stays below 2^24, else int32:
    `a` is split into base-16 digits (|digit| <= 16), both run through one `product` (stacked along `axis`, so the
    weights are emitted once), and the two exact results are recombined in int32."""
    t = tf.constant(a.value) if isinstance(a.value, np.ndarray) else a.value
    const_bias = isinstance(bias, np.ndarray)
    bias_peak = float(np.abs(bias).max()) if const_bias and bias.size else 0.0
    if a.peak * l1 + bias_peak < _EXACT:
        acc = product(t)
        if bias is None:
            return acc
        return acc + tf.constant(bias.astype(np.float32)) if const_bias else tf.cast(acc, tf.int32) + bias
    if _DIGIT * l1 >= _EXACT:
        raise Decline(f"integer product summing up to {l1:.0f} per output: too large to keep exact in float32")
    high = tf.floor(t / _DIGIT)
    high_out, low_out = tf.split(product(tf.concat([high, t - high * _DIGIT], axis)), 2, axis)
    acc = tf.cast(high_out, tf.int32) * _DIGIT + tf.cast(low_out, tf.int32)
    if bias is None:
        return acc
    return acc + (tf.constant(bias) if const_bias else bias)


def _requantize(acc: tf.Tensor, multiplier: tf.Tensor, zp: tf.Tensor) -> tf.Tensor:
    """round(acc * multiplier) + zero point, saturated: ORT's requantization (the int32 sum converted to float
    once, times the float32 multiplier)."""
    q = tf.round(tf.cast(acc, tf.float32) * multiplier) + _to_float(zp)
    return _saturate(q, np.dtype(zp.dtype.as_numpy_dtype))


def _multiplier(a_scale: tf.Tensor, b_scale: tf.Tensor, y_scale: tf.Tensor) -> tf.Tensor:
    """a_scale * b_scale / y_scale in the scales' type (float32 arithmetic rounded to it after each step)."""
    dtype = a_scale.dtype

    def rounded(v: tf.Tensor) -> tf.Tensor:
        return v if dtype == tf.float32 else tf.cast(tf.cast(v, dtype), tf.float32)

    a, b, y = (tf.cast(s, tf.float32) for s in (a_scale, b_scale, y_scale))
    return rounded(rounded(a * b) / y)


def _matmul_product(ctx: EmitContext, a_name: str, b: _Centred) -> Callable[[tf.Tensor], tf.Tensor]:
    """numpy matmul by `b`: one 2-D MatMul over flattened rows for a matrix `b` (weights), else BatchMatMulV2 on
    explicitly broadcast operands (oneDNN's kernel mishandles broadcasting, docs/onednn.md)."""
    b_t = tf.constant(b.value) if isinstance(b.value, np.ndarray) else b.value
    if ctx.rank(a_name) < 2 or b_t.shape.rank < 2:
        raise Decline("integer matmul of a 1-D operand")

    def product(a: tf.Tensor) -> tf.Tensor:
        if b_t.shape.rank > 2:
            return tf.raw_ops.BatchMatMulV2(*_broadcast_batch(a, b_t))
        if a.shape.rank == 2:
            return tf.raw_ops.MatMul(a=a, b=b_t)
        rows = tf.raw_ops.MatMul(a=tf.reshape(a, [-1, b_t.shape[0]]), b=b_t)
        return tf.reshape(rows, tf.concat([tf.shape(a)[:-1], tf.shape(b_t)[-1:]], 0))
    return product


@op("MatMulInteger", since=10)
def matmul_integer(ctx: EmitContext, node: Node) -> None:
    a = _centred(ctx, node.inputs[0], opt_input(node, 2), -2)
    b = _centred(ctx, node.inputs[1], opt_input(node, 3), -1)
    acc = _accumulate(_matmul_product(ctx, node.inputs[0], b), a, b.l1((-2,)), -2)
    ctx.set(node.outputs[0], tf.cast(acc, tf.int32))


@op("QLinearMatMul", since=10)
def qlinear_matmul(ctx: EmitContext, node: Node) -> None:
    """Exact integer product, then ORT's requantization. Per-row a parameters lie along rows, per-column b and y
    ones along columns."""
    a = _centred(ctx, node.inputs[0], node.inputs[2], -2)
    b = _centred(ctx, node.inputs[3], node.inputs[5], -1)
    acc = _accumulate(_matmul_product(ctx, node.inputs[0], b), a, b.l1((-2,)), -2)
    rank = ctx.rank(node.inputs[0])
    a_scale, b_scale, y_scale, y_zp = (_along(ctx.onnx_order(node.inputs[k]), rank, -2 if k == 1 else -1)
                                       for k in (1, 4, 6, 7))
    ctx.set(node.outputs[0], _requantize(acc, _multiplier(a_scale, b_scale, y_scale), y_zp))


def _conv_product(ctx: EmitContext, node: Node, x: tf.Tensor, w: _Centred) -> Callable[[tf.Tensor], tf.Tensor]:
    """Conv of a channels-last tensor by centred weights `w` (OIHW) on conv.py's kernels (grouped and depthwise
    included); padding adds zeros, i.e. the zero point before centring, as ONNX pads."""
    weights = w.value
    spatial = len(weights.shape) - 2
    group = int(node.attrs["group"])
    if spatial not in (1, 2):
        raise Decline(f"{spatial}-D integer convolution")
    if isinstance(weights, tf.Tensor) and (group != 1 or None in weights.shape.as_list()):
        raise Decline("runtime weights of a grouped integer convolution or of unknown shape")
    strides, dilations = spatial_attrs(node, spatial)
    kernel = [int(k) for k in weights.shape[2:]]
    begin, end = onnx_pads(node, x.shape.as_list()[1:-1], kernel, strides, dilations)
    if spatial == 1:  # as a 2-D conv with a unit height, as conv.py does
        weights = weights[:, :, None, :]
        strides, dilations, kernel, begin, end = [1] + strides, [1] + dilations, [1] + kernel, [0] + begin, [0] + end

    def product(t: tf.Tensor) -> tf.Tensor:
        t = tf.expand_dims(t, 1) if spatial == 1 else t
        t, padding = padding_mode(t, begin, end, kernel, strides, dilations)
        y = _grouped(t, weights, group, strides, dilations, padding)
        return tf.squeeze(y, [1]) if spatial == 1 else y
    return product


def _conv(ctx: EmitContext, node: Node, x_zp: str, w_name: str, w_zp: str,
          bias: np.ndarray | tf.Tensor | None = None) -> tf.Tensor:
    """The exact integer convolution of ConvInteger and QLinearConv, channels last."""
    x_t = ctx.channels_last(node.inputs[0])
    x = _centred(ctx, node.inputs[0], x_zp, -1, x_t)
    w = _centred(ctx, w_name, w_zp, 0)
    inner = tuple(range(1, len(w.value.shape)))
    return _accumulate(_conv_product(ctx, node, x_t, w), x, w.l1(inner), 0, bias)


@op("ConvInteger", since=10)
def conv_integer(ctx: EmitContext, node: Node) -> None:
    acc = _conv(ctx, node, opt_input(node, 2), node.inputs[1], opt_input(node, 3))
    ctx.set(node.outputs[0], tf.cast(acc, tf.int32), channels_last(acc.shape.rank))


@op("QLinearConv", since=10)
def qlinear_conv(ctx: EmitContext, node: Node) -> None:
    """Exact integer conv plus the int32 bias, then ORT's requantization with a per-tensor or per-output-channel
    w_scale (the last axis, channels last)."""
    bias = None
    if opt_input(node, 8):
        const = ctx.const(node.inputs[8])
        bias = const if const is not None else ctx.onnx_order(node.inputs[8])
    acc = _conv(ctx, node, node.inputs[2], node.inputs[3], node.inputs[5], bias)
    rank = acc.shape.rank
    x_scale, w_scale, y_scale, y_zp = (_along(ctx.onnx_order(node.inputs[k]), rank, -1) for k in (1, 4, 6, 7))
    ctx.set(node.outputs[0], _requantize(acc, _multiplier(x_scale, w_scale, y_scale), y_zp), channels_last(rank))
