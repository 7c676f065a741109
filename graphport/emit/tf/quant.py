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

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import tensorflow as tf
from onnx import TensorProto, helper

from graphport.emit.tf.context import EmitContext, Perm, channels_last, opt_input
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


def _value(ctx: EmitContext, name: str) -> np.ndarray | tf.Tensor:
    """A scale, zero point or bias: the array when constant (so no Reshape or Cast of it runs per call), else the
    runtime tensor in ONNX order."""
    arr = ctx.const(name)
    return arr if arr is not None and arr.dtype != object else ctx.onnx_order(name)


def _f32(v: np.ndarray | tf.Tensor) -> np.ndarray | tf.Tensor:
    """float32 values of `v`; TF casts 4-bit integers only to other integers, so those go through int32."""
    if isinstance(v, np.ndarray):
        return v.astype(np.float32)
    if v.dtype.name in ("int4", "uint4"):
        v = tf.cast(v, tf.int32)
    return tf.cast(v, tf.float32)


def _div(a: tf.Tensor, b: np.ndarray | tf.Tensor | float) -> tf.Tensor:
    """a / b correctly rounded, as ORT divides. Grappler turns a division by a constant into a multiplication by
    its reciprocal, which rounds differently (-8.15 * 10 is a .5 tie, -8.15 / 0.1 is not); it leaves DivNoNan
    alone, whose one difference, 0 for a zero divisor, concerns only scales that ONNX does not allow."""
    return tf.math.divide_no_nan(a, tf.cast(b, a.dtype))


def _zero(v: np.ndarray | tf.Tensor | None) -> bool:
    """No zero point, or a constant 0 (symmetric quantization): its add and subtract are left out."""
    return v is None or (isinstance(v, np.ndarray) and not np.any(v.astype(np.float32)))


def _size(v: np.ndarray | tf.Tensor) -> int | None:
    return v.size if isinstance(v, np.ndarray) else v.shape.num_elements()


def _along(v: np.ndarray | tf.Tensor, rank: int, axis: int) -> np.ndarray | tf.Tensor:
    """A scale or zero point broadcastable against a rank-`rank` tensor: one element is a scalar, a vector lies along
    `axis` (per-axis, per-row or per-column quantization), anything else already has the operand's rank."""
    reshape = np.reshape if isinstance(v, np.ndarray) else tf.reshape
    if _size(v) == 1:
        return reshape(v, []) if len(v.shape) else v
    if len(v.shape) != 1:
        return v
    shape = [1] * rank
    shape[axis] = -1
    return reshape(v, shape)


def _spread(p: np.ndarray | tf.Tensor, rank: int, axis: int, block: int, size: int | None) -> np.ndarray | tf.Tensor:
    """A scale or zero point broadcastable against x: per tensor or per axis (`_along`), or blocked: repeated
    `block` times along `axis` and cut to x's `size` there."""
    if not block:
        return _along(p, rank, axis)
    if size is None:
        raise Decline("blocked quantization along an axis of unknown size")
    if isinstance(p, np.ndarray):
        return np.repeat(p, block, axis).take(range(size), axis)
    p = tf.repeat(p, block, axis=axis)
    return tf.slice(p, [0] * rank, [size if i == axis else -1 for i in range(rank)])


def _check_type(dtype: np.dtype, what: str) -> None:
    if dtype.name not in _INT_RANGES and dtype.name not in _FLOAT8 and dtype != np.int32:
        raise Decline(f"{what} {dtype.name} (TF has no such dtype or no Cast kernel for it)")


# ---- quantized outputs and their float twins -------------------------------------------------------------------

@dataclass
class _Twin:
    """A quantized output q kept also as r = q - zero point in float32 (integral, what it was computed as), so a
    consumer that subtracts the same zero point first (DequantizeLinear, the integer convs and matmuls) takes r and
    skips the Cast back to float and the Sub: a QDQ pair costs five elementwise ops instead of nine."""

    q: tf.Tensor
    r: tf.Tensor
    zp: str  # the zero point's input name ('' for none)
    axis: int | None  # TF axis of a per-axis zero point, None for one per tensor


_TWINS: weakref.WeakKeyDictionary[EmitContext, dict[str, _Twin]] = weakref.WeakKeyDictionary()


def _emit_quantized(ctx: EmitContext, name: str, v: tf.Tensor, zp: np.ndarray | tf.Tensor | None, dtype: np.dtype,
                    key: tuple[str, int | None], perm: Perm = None) -> None:
    """Set `name` = saturate(round(v) + zp) as `dtype`. Clamping round(v) to the range shifted by the zero point
    first, then adding it, is ORT's order (and equal to clamping after the add: all values are integers)."""
    lo, hi = _INT_RANGES[dtype.name]
    if not _zero(zp):
        lo, hi = lo - _f32(zp), hi - _f32(zp)
    r = tf.minimum(tf.maximum(tf.round(v), lo), hi)
    q = r if _zero(zp) else r + _f32(zp)
    if dtype.name in ("int4", "uint4"):
        q = tf.cast(q, tf.int32)
    q = tf.cast(q, tf.as_dtype(dtype))
    ctx.set(name, q, perm)
    _TWINS.setdefault(ctx, {})[name] = _Twin(q, r, *key)


def _twin(ctx: EmitContext, name: str, key: tuple[str, int | None], perm: Perm = None) -> tf.Tensor | None:
    """r of `name` if it was quantized here with the zero point `key` names, in layout `perm`."""
    twin = _TWINS.get(ctx, {}).get(name)
    if twin is None or ctx.raw(name) is not twin.q or (twin.zp, twin.axis) != key or ctx.perm(name) != perm:
        return None
    return twin.r


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
        self.tf_axis = self.axis if self.block or not self.perm else self.perm.index(self.axis)

    def param(self, k: int) -> np.ndarray | tf.Tensor | None:
        if not opt_input(self.node, k):
            return None
        size = self.x.shape[self.axis] if self.block else None
        return _spread(_value(self.ctx, self.node.inputs[k]), self.x.shape.rank, self.tf_axis, self.block, size)

    def key(self, zp: np.ndarray | tf.Tensor | None) -> tuple[str, int | None]:
        """How a twin's zero point is matched: its name and, unless it is one number, its axis (blocked: never)."""
        if self.block:
            return "", -1
        return opt_input(self.node, 2), None if zp is None or _size(zp) == 1 else self.tf_axis


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
    v = _div(_f32(e.x), _f32(e.param(1)))
    if target.name in _FLOAT8:
        if node.attrs.get("saturate", 1):  # +-inf and out of range to the largest finite value; NaN stays NaN
            top = tf.constant(float(ml_dtypes.finfo(target).max))
            v = tf.where(v > top, top, tf.where(v < -top, -top, v))
        ctx.set(node.outputs[0], tf.cast(v, tf.as_dtype(target)), e.perm)
        return
    zp = e.param(2)
    _emit_quantized(ctx, node.outputs[0], v, zp, target, e.key(zp), e.perm)


@op("DequantizeLinear", since=10)
def dequantize_linear(ctx: EmitContext, node: Node) -> None:
    """y = (x - zero_point) * scale in float32, rounded once to the output type (the scale's, or output_dtype).

    8- and 16-bit differences are exact in float32; int32 ones are taken in int32 first, as ORT does."""
    source = _dtype_of(ctx, node.inputs[0])
    _check_type(source, "dequantization of")
    code = node.attrs.get("output_dtype", 0)
    out = np.dtype(helper.tensor_dtype_to_np_dtype(code)) if code else _dtype_of(ctx, node.inputs[1])
    has_zp = bool(opt_input(node, 2)) and source.name not in _FLOAT8  # float8 zero points must be 0
    if _fold_dequantize(ctx, node, has_zp, out):
        return
    e = _Elementwise(ctx, node)
    zp = e.param(2) if has_zp else None
    v = _twin(ctx, node.inputs[0], e.key(zp), e.perm)
    if v is None and source == np.int32 and not _zero(zp):
        v = tf.cast(e.x - zp, tf.float32)
    elif v is None:
        v = _f32(e.x) if _zero(zp) else _f32(e.x) - _f32(zp)
    ctx.set(node.outputs[0], tf.cast(v * _f32(e.param(1)), tf.as_dtype(out)), e.perm)


def _fold_dequantize(ctx: EmitContext, node: Node, has_zp: bool, out: np.dtype) -> bool:
    """Dequantize constant weights now, into the IR, so that the Conv or Gemm reading them sees constant weights
    (grouped convs need them). Constant folding would, but the ONNX reference evaluator it uses has no
    DequantizeLinear before opset 19, so the weights of opset 10-18 QDQ models arrive here."""
    x, scale = ctx.const(node.inputs[0]), ctx.const(node.inputs[1])
    zp = ctx.const(node.inputs[2]) if has_zp else np.zeros((), np.int32)
    if x is None or scale is None or zp is None or object in (x.dtype, scale.dtype, zp.dtype):
        return False
    axis, block = int(node.attrs.get("axis", 1)) % max(x.ndim, 1), int(node.attrs.get("block_size", 0))
    scale, zp = (_spread(p, x.ndim, axis, block, x.shape[axis] if x.ndim else None) for p in (scale, zp))
    if x.dtype == np.int32:
        v = (x - zp.astype(np.int32)).astype(np.float32)
    else:
        v = x.astype(np.float32) - zp.astype(np.float32)
    ctx.graph.value(node.outputs[0]).const = (v * scale.astype(np.float32)).astype(out)
    return True


@op("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(ctx: EmitContext, node: Node) -> None:
    """uint8 over [min(x, 0), max(x, 0)]. As in ORT, an all-zero x gets scale 1 (the ONNX reference: 1/255)."""
    x = ctx.raw(node.inputs[0])
    lo, hi = tf.minimum(tf.reduce_min(x), 0.0), tf.maximum(tf.reduce_max(x), 0.0)
    scale = tf.where(tf.equal(hi, lo), 1.0, _div(hi - lo, 255.0))
    zp = tf.round(tf.minimum(tf.maximum(_div(-lo, scale), 0.0), 255.0))
    _emit_quantized(ctx, node.outputs[0], _div(x, scale), zp, np.dtype(np.uint8), (node.outputs[2], None),
                    ctx.perm(node.inputs[0]))
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


def _centred(ctx: EmitContext, name: str, zp_name: str, axis: int, layout: Perm = None) -> _Centred:
    """`name` minus zero point `zp_name` (a vector of which lies along `axis`), laid out as `layout`."""
    dtype = _dtype_of(ctx, name)
    if dtype.name not in ("int8", "uint8"):
        raise Decline(f"integer product of {dtype.name} operands (8-bit integers only)")
    lo, hi = _INT_RANGES[dtype.name]
    arr, zp = ctx.const(name), _value(ctx, zp_name) if zp_name else None
    if isinstance(zp, tf.Tensor):
        peak = float(hi - lo)
    else:
        z = np.zeros((), np.float32) if zp is None else zp.astype(np.float32)
        peak = float(np.max(np.maximum(z - lo, hi - z)))
        if arr is not None and layout is None:
            arr = arr.astype(np.float32) - _along(z, arr.ndim, axis)
            return _Centred(arr, float(np.abs(arr).max()) if arr.size else 0.0)
    rank = ctx.rank(name)
    r = _twin(ctx, name, (zp_name, None if zp is None or _size(zp) == 1 else axis % rank), layout)
    if r is not None:
        return _Centred(r, peak)
    x = _f32(ctx.in_perm(name, layout))
    return _Centred(x if _zero(zp) else x - _along(_f32(zp), rank, axis), peak)


def _accumulate(product: Callable[[tf.Tensor], tf.Tensor], a: _Centred, l1: float, axis: int,
                bias: np.ndarray | tf.Tensor | None = None) -> tf.Tensor:
    """`product(a)` (+ int32 `bias`) exactly, for a `product` linear in `a` whose outputs each sum at most `l1` of
    the other operand's |values| times one of `a`'s. float32 when every partial sum stays below 2^24, else int32:
    `a` is split into base-16 digits (|digit| <= 16), both run through one `product` (stacked along `axis`, so the
    weights are emitted once), and the two exact results are recombined in int32."""
    t = tf.constant(a.value) if isinstance(a.value, np.ndarray) else a.value
    if isinstance(bias, np.ndarray) and not np.any(bias):
        bias = None  # grappler would drop the add, so `_scaled` must see the bare Conv2D
    const_bias = isinstance(bias, np.ndarray)
    exact = a.peak * l1 + (float(np.abs(bias).max()) if const_bias else 0.0) < _EXACT
    if exact:
        acc = product(t)
    elif _DIGIT * l1 < _EXACT:
        high = tf.floor(t / _DIGIT)
        high_out, low_out = tf.split(product(tf.concat([high, t - high * _DIGIT], axis)), 2, axis)
        acc = tf.cast(high_out, tf.int32) * _DIGIT + tf.cast(low_out, tf.int32)
    else:
        raise Decline(f"integer product summing up to {l1:.0f} per output: too large to keep exact in float32")
    if bias is None:
        return acc
    if exact and const_bias:
        return acc + bias.astype(np.float32)
    return tf.cast(acc, tf.int32) + bias


def _scaled(acc: tf.Tensor, multiplier: np.ndarray | tf.Tensor) -> tf.Tensor:
    """float(acc) * multiplier, as ORT requantizes. A Conv2D's float sum goes through int32 first: grappler pushes
    a constant Mul that directly follows a Conv2D into its weights (MulConvPushDown), and scaled weights no longer
    sum exactly (a bias add in between prevents it, but a zero bias is dropped)."""
    if acc.op.type in ("Conv2D", "Conv3D"):
        acc = tf.cast(acc, tf.int32)
    return tf.cast(acc, tf.float32) * multiplier


def _multiplier(a_scale: np.ndarray | tf.Tensor, b_scale: np.ndarray | tf.Tensor,
                y_scale: np.ndarray | tf.Tensor) -> np.ndarray | tf.Tensor:
    """a_scale * b_scale / y_scale in the scales' type (float32 arithmetic rounded to it after each step); computed
    now when the scales are constants, as they are in quantized models."""
    scales = (a_scale, b_scale, y_scale)
    if all(isinstance(v, np.ndarray) for v in scales):
        dtype = a_scale.dtype
        a, b, y = (v.astype(np.float32) for v in scales)
        return ((a * b).astype(dtype).astype(np.float32) / y).astype(dtype).astype(np.float32)
    dtype = next(v.dtype for v in scales if isinstance(v, tf.Tensor))

    def rounded(v: tf.Tensor) -> tf.Tensor:
        return v if dtype == tf.float32 else tf.cast(tf.cast(v, dtype), tf.float32)

    a, b, y = (tf.cast(v, tf.float32) for v in scales)
    return rounded(_div(rounded(a * b), y))


def _matmul_product(ctx: EmitContext, a_name: str, b: _Centred) -> Callable[[tf.Tensor], tf.Tensor]:
    """numpy matmul by `b`: one 2-D MatMul over flattened rows for a matrix `b` (weights), else BatchMatMulV2 on
    explicitly broadcast operands (oneDNN's kernel mishandles broadcasting, docs/onednn.md)."""
    b_t = tf.constant(b.value) if isinstance(b.value, np.ndarray) else b.value
    if ctx.rank(a_name) < 2 or b_t.shape.rank < 2:
        raise Decline("integer matmul of a 1-D operand")

    def product(a: tf.Tensor) -> tf.Tensor:
        if b_t.shape.rank > 2:
            x, y = _broadcast_batch(a, b_t)
            return tf.raw_ops.BatchMatMulV2(x=x, y=y)
        if a.shape.rank == 2:
            return tf.raw_ops.MatMul(a=a, b=b_t)
        rows = tf.raw_ops.MatMul(a=tf.reshape(a, [-1, b_t.shape[0]]), b=b_t)
        return tf.reshape(rows, tf.concat([tf.shape(a)[:-1], tf.shape(b_t)[-1:]], 0))
    return product


def _matmul(ctx: EmitContext, node: Node, a: int, a_zp: str, b: int, b_zp: str) -> tf.Tensor:
    """The exact integer product of MatMulInteger and QLinearMatMul (a per-row zero point lies along rows)."""
    left, right = _centred(ctx, node.inputs[a], a_zp, -2), _centred(ctx, node.inputs[b], b_zp, -1)
    return _accumulate(_matmul_product(ctx, node.inputs[a], right), left, right.l1((-2,)), -2)


@op("MatMulInteger", since=10)
def matmul_integer(ctx: EmitContext, node: Node) -> None:
    ctx.set(node.outputs[0], tf.cast(_matmul(ctx, node, 0, opt_input(node, 2), 1, opt_input(node, 3)), tf.int32))


@op("QLinearMatMul", since=10)
def qlinear_matmul(ctx: EmitContext, node: Node) -> None:
    """Exact integer product, then ORT's requantization. Per-row a parameters lie along rows, per-column b and y
    ones along columns."""
    acc = _matmul(ctx, node, 0, node.inputs[2], 3, node.inputs[5])
    rank = ctx.rank(node.inputs[0])
    a_scale, b_scale, y_scale, y_zp = (_along(_value(ctx, node.inputs[k]), rank, -2 if k == 1 else -1)
                                       for k in (1, 4, 6, 7))
    v = _scaled(acc, _multiplier(a_scale, b_scale, y_scale))
    key = node.inputs[7], None if _size(y_zp) == 1 else acc.shape.rank - 1
    _emit_quantized(ctx, node.outputs[0], v, y_zp, _dtype_of(ctx, node.inputs[7]), key)


def _conv_product(ctx: EmitContext, node: Node, x_shape: list[int | None],
                  w: _Centred) -> Callable[[tf.Tensor], tf.Tensor]:
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
    begin, end = onnx_pads(node, x_shape[1:-1], kernel, strides, dilations)
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
    x = _centred(ctx, node.inputs[0], x_zp, -1, channels_last(ctx.rank(node.inputs[0])))
    w = _centred(ctx, w_name, w_zp, 0)
    inner = tuple(range(1, len(w.value.shape)))
    return _accumulate(_conv_product(ctx, node, x.value.shape.as_list(), w), x, w.l1(inner), 0, bias)


@op("ConvInteger", since=10)
def conv_integer(ctx: EmitContext, node: Node) -> None:
    acc = _conv(ctx, node, opt_input(node, 2), node.inputs[1], opt_input(node, 3))
    ctx.set(node.outputs[0], tf.cast(acc, tf.int32), channels_last(acc.shape.rank))


@op("QLinearConv", since=10)
def qlinear_conv(ctx: EmitContext, node: Node) -> None:
    """Exact integer conv plus the int32 bias, then ORT's requantization with a per-tensor or per-output-channel
    w_scale (the last axis, channels last)."""
    bias = _value(ctx, node.inputs[8]) if opt_input(node, 8) else None
    acc = _conv(ctx, node, node.inputs[2], node.inputs[3], node.inputs[5], bias)
    rank = acc.shape.rank
    x_scale, w_scale, y_scale, y_zp = (_along(_value(ctx, node.inputs[k]), rank, -1) for k in (1, 4, 6, 7))
    v = _scaled(acc, _multiplier(x_scale, w_scale, y_scale))
    _emit_quantized(ctx, node.outputs[0], v, y_zp, _dtype_of(ctx, node.inputs[7]), (node.inputs[7], None),
                    channels_last(rank))
