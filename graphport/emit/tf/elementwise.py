"""Elementwise ops: they keep whatever layout their runtime input has, and constants are permuted to match."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import numpy as np
import tensorflow as tf
from onnx import helper

from graphport.emit.tf.context import EmitContext, Perm, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node


def aligned(ctx: EmitContext, names: list[str]) -> tuple[list[tf.Tensor], Perm]:
    """All inputs in one layout: that of the first full-rank runtime input, lower ranks broadcast ONNX-style."""
    ranks = [ctx.rank(n) for n in names]
    out_rank = max(ranks)
    perm = next((ctx.perm(n) for n, r in zip(names, ranks)
                 if r == out_rank and ctx.perm(n) is not None), None)
    if perm is None:
        return [ctx.onnx_order(n) for n in names], None
    tensors = []
    for n, r in zip(names, ranks):
        if r == out_rank:
            tensors.append(ctx.in_perm(n, perm))
            continue
        arr = ctx.const(n)
        if arr is not None and arr.dtype != object:
            tensors.append(tf.constant(np.transpose(arr.reshape((1,) * (out_rank - r) + arr.shape), perm)))
        else:
            t = ctx.onnx_order(n)  # leading 1s by ExpandDims: a runtime Shape->Concat->Reshape slows old TF loads
            for _ in range(out_rank - r):
                t = tf.expand_dims(t, 0)
            tensors.append(tf.transpose(t, perm))
    return tensors, perm


def _binary(fn: Callable[..., tf.Tensor]) -> Callable[[EmitContext, Node], None]:
    def handler(ctx: EmitContext, node: Node) -> None:
        tensors, perm = aligned(ctx, [i for i in node.inputs if i])
        ctx.set(node.outputs[0], reduce(fn, tensors), perm)
    return handler


def _div(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    return tf.truncatediv(a, b) if a.dtype.is_integer else tf.math.divide(a, b)


def _pow(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    if a.dtype.is_integer and b.dtype.is_floating:
        return tf.cast(tf.pow(tf.cast(a, b.dtype), b), a.dtype)
    return tf.pow(a, tf.cast(b, a.dtype))


for _name, _fn in {
    "Add": tf.add, "Sub": tf.subtract, "Mul": tf.multiply, "Div": _div, "Pow": _pow,
    "Max": tf.maximum, "Min": tf.minimum, "Sum": tf.add, "Equal": tf.equal, "Less": tf.less,
    "LessOrEqual": tf.less_equal, "Greater": tf.greater, "GreaterOrEqual": tf.greater_equal,
    "And": tf.logical_and, "Or": tf.logical_or, "Xor": tf.math.logical_xor,
    "BitwiseAnd": tf.bitwise.bitwise_and, "BitwiseOr": tf.bitwise.bitwise_or, "BitwiseXor": tf.bitwise.bitwise_xor,
}.items():
    op(_name)(_binary(_fn))


@op("Mean")
def mean(ctx: EmitContext, node: Node) -> None:
    tensors, perm = aligned(ctx, node.inputs)
    ctx.set(node.outputs[0], reduce(tf.add, tensors) / tf.constant(len(tensors), tensors[0].dtype), perm)


@op("Mod", since=10)
def mod_10(ctx: EmitContext, node: Node) -> None:
    """Before Mod-28 floats required fmod=1: they always truncate."""
    _mod(ctx, node, floats_truncate=True)


@op("Mod", since=28)
def mod(ctx: EmitContext, node: Node) -> None:
    """From Mod-28 on fmod=0 floors for floats too."""
    _mod(ctx, node, floats_truncate=False)


def _mod(ctx: EmitContext, node: Node, floats_truncate: bool) -> None:
    (a, b), perm = aligned(ctx, node.inputs)
    trunc = node.attrs["fmod"] or (a.dtype.is_floating and floats_truncate)
    fn = tf.truncatemod if trunc else tf.math.floormod
    if a.dtype in (tf.float16, tf.bfloat16) or (trunc and a.dtype not in (tf.int32, tf.int64, tf.float32, tf.float64)):
        wide = tf.float32 if a.dtype.is_floating else tf.int64  # TF lacks CPU kernels for these; computed wider, rounded once
        ctx.set(node.outputs[0], tf.cast(fn(tf.cast(a, wide), tf.cast(b, wide)), a.dtype), perm)
        return
    ctx.set(node.outputs[0], fn(a, b), perm)


@op("Where")
def where(ctx: EmitContext, node: Node) -> None:
    tensors, perm = aligned(ctx, node.inputs)
    ctx.set(node.outputs[0], tf.where(*tensors), perm)


@op("PRelu")
def prelu_6(ctx: EmitContext, node: Node) -> None:
    """PRelu-6 applies a 1-D slope along the channel axis (1)."""
    x_name, s_name = node.inputs
    arr = ctx.const(s_name)
    rank = ctx.rank(x_name)
    if arr is None or arr.ndim != 1 or arr.size == 1 or rank <= 2:
        prelu(ctx, node)  # a slope that broadcasts the same either way
        return
    x = ctx.onnx_order(x_name)
    slope = tf.constant(arr.reshape(-1, *[1] * (rank - 2)).astype(x.dtype.as_numpy_dtype))
    ctx.set(node.outputs[0], tf.where(x < 0, x * slope, x))


@op("PRelu", since=7)
def prelu(ctx: EmitContext, node: Node) -> None:
    """From opset 7 on the slope broadcasts from the right."""
    (x, slope), perm = aligned(ctx, node.inputs)
    ctx.set(node.outputs[0], tf.where(x < 0, x * slope, x), perm)


def _unary(fn: Callable[[tf.Tensor, dict], tf.Tensor]) -> Callable[[EmitContext, Node], None]:
    def handler(ctx: EmitContext, node: Node) -> None:
        ctx.set(node.outputs[0], fn(ctx.raw(node.inputs[0]), node.attrs), ctx.perm(node.inputs[0]))
    return handler


def _c(x: tf.Tensor, v: float) -> tf.Tensor:
    return tf.constant(v, x.dtype)


def _hard_sigmoid(x: tf.Tensor, a: dict) -> tf.Tensor:
    """clip(alpha*x + beta, 0, 1) as Relu6(6*alpha*x + 6*beta) / 6: one Relu6 kernel instead of Maximum and
    Minimum, and with PyTorch's alpha = 1/6 no Mul before it (every op is a pass over memory in TF's Eigen
    kernels; MobileNetV3 runs 28 of these)."""
    if not x.dtype.is_floating:
        return tf.clip_by_value(_c(x, a["alpha"]) * x + _c(x, a["beta"]), _c(x, 0), _c(x, 1))
    scale, shift = 6 * a["alpha"], 6 * a["beta"]
    y = x if abs(scale - 1) < 1e-7 else _c(x, scale) * x
    return tf.nn.relu6(y + _c(x, shift)) * _c(x, 1 / 6)


for _name, _ufn in {
    "Relu": lambda x, a: tf.nn.relu(x), "Sigmoid": lambda x, a: tf.sigmoid(x), "Tanh": lambda x, a: tf.tanh(x),
    "Exp": lambda x, a: tf.exp(x), "Log": lambda x, a: tf.math.log(x), "Sqrt": lambda x, a: tf.sqrt(x),
    "Abs": lambda x, a: tf.abs(x), "Neg": lambda x, a: tf.negative(x), "Floor": lambda x, a: tf.floor(x),
    "Ceil": lambda x, a: tf.math.ceil(x), "Reciprocal": lambda x, a: tf.math.reciprocal(x),
    "Erf": lambda x, a: tf.math.erf(x), "Sin": lambda x, a: tf.sin(x), "Cos": lambda x, a: tf.cos(x),
    "Tan": lambda x, a: tf.tan(x), "Asin": lambda x, a: tf.asin(x), "Acos": lambda x, a: tf.acos(x),
    "Atan": lambda x, a: tf.atan(x), "Sinh": lambda x, a: tf.sinh(x), "Cosh": lambda x, a: tf.cosh(x),
    "Asinh": lambda x, a: tf.asinh(x), "Acosh": lambda x, a: tf.acosh(x), "Atanh": lambda x, a: tf.atanh(x),
    "Not": lambda x, a: tf.logical_not(x), "Sign": lambda x, a: tf.sign(x), "Round": lambda x, a: tf.round(x),
    "Softplus": lambda x, a: tf.nn.softplus(x), "Softsign": lambda x, a: tf.nn.softsign(x),
    "Identity": lambda x, a: tf.identity(x), "IsNaN": lambda x, a: tf.math.is_nan(x),
    "Elu": lambda x, a: tf.where(x > 0, x, _c(x, a["alpha"]) * (tf.exp(x) - _c(x, 1))),
    "LeakyRelu": lambda x, a: tf.nn.leaky_relu(x, a["alpha"]),
    "Selu": lambda x, a: _c(x, a["gamma"]) * tf.where(x > 0, x, _c(x, a["alpha"]) * (tf.exp(x) - _c(x, 1))),
    "Celu": lambda x, a: tf.maximum(x, _c(x, 0)) + tf.minimum(
        _c(x, 0), _c(x, a["alpha"]) * (tf.exp(x / _c(x, a["alpha"])) - _c(x, 1))),
    "ThresholdedRelu": lambda x, a: tf.where(x > _c(x, a["alpha"]), x, _c(x, 0)),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": lambda x, a: x * _hard_sigmoid(x, {"alpha": 1 / 6, "beta": 0.5}),  # fixed by the spec
    "Mish": lambda x, a: x * tf.tanh(tf.nn.softplus(x)),
    "Gelu": lambda x, a: tf.nn.gelu(x, approximate=a["approximate"] == "tanh"),
    "Swish": lambda x, a: x * tf.sigmoid(_c(x, a["alpha"]) * x),
    "Shrink": lambda x, a: tf.where(x < _c(x, -a["lambd"]), x + _c(x, a["bias"]),
                                    tf.where(x > _c(x, a["lambd"]), x - _c(x, a["bias"]), _c(x, 0))),
    "BitwiseNot": lambda x, a: tf.bitwise.invert(x),
}.items():
    op(_name)(_unary(_ufn))


@op("BitShift", since=11)
def bit_shift(ctx: EmitContext, node: Node) -> None:
    """TF's shift kernels take one dtype on both sides and leave out-of-range amounts undefined; ONNX-28 defines
    them (a negative amount, or one of the type's width or more, gives only the sign fill: -1 for a right shift
    of a negative signed value, else 0), so those elements are selected explicitly."""
    (x, y), perm = aligned(ctx, node.inputs)
    y = tf.cast(y, x.dtype)
    width = _c(x, x.dtype.size * 8)
    valid = (y >= _c(x, 0)) & (y < width)
    left = node.attrs["direction"] == "LEFT"
    shifted = (tf.bitwise.left_shift if left else tf.bitwise.right_shift)(x, tf.where(valid, y, tf.zeros_like(y)))
    fill = tf.where(x < _c(x, 0), -tf.ones_like(x), tf.zeros_like(x)) if not (x.dtype.is_unsigned or left) \
        else tf.zeros_like(x)
    ctx.set(node.outputs[0], tf.where(valid, shifted, fill), perm)


@op("IsInf")
def is_inf(ctx: EmitContext, node: Node) -> None:
    x = ctx.raw(node.inputs[0])
    pos, neg = node.attrs["detect_positive"], node.attrs["detect_negative"]
    inf = tf.math.is_inf(x)
    out = tf.logical_and(inf, x > 0) if pos and not neg else tf.logical_and(inf, x < 0) if neg and not pos else \
        inf if pos else tf.zeros_like(inf)
    ctx.set(node.outputs[0], out, ctx.perm(node.inputs[0]))


_FLOAT32_MAX = float(np.finfo(np.float32).max)


@op("Clip")
def clip_1(ctx: EmitContext, node: Node) -> None:
    """Clip-1/6: bounds are attributes. Clip-6's defaults, -+FLT_MAX, bound nothing a float32 can hold, so they
    are left out as an absent bound is (a Clip(min=0) stays a Relu)."""
    lo, hi = (node.attrs.get(k) for k in ("min", "max"))
    _clip(ctx, node, None if lo is not None and lo <= -_FLOAT32_MAX else lo,
          None if hi is not None and hi >= _FLOAT32_MAX else hi)


@op("Clip", since=11)
def clip(ctx: EmitContext, node: Node) -> None:
    """Clip-11 on: optional bound inputs, constant or runtime."""
    x = ctx.raw(node.inputs[0])
    bounds = [opt_input(node, k) for k in (1, 2)]
    if any(b and ctx.const(b) is None for b in bounds):  # bounds known only at run time
        y = x
        if bounds[0]:
            y = tf.maximum(y, ctx.onnx_order(bounds[0]))
        if bounds[1]:
            y = tf.minimum(y, ctx.onnx_order(bounds[1]))
        ctx.set(node.outputs[0], y, ctx.perm(node.inputs[0]))
        return
    _clip(ctx, node, *(ctx.static(b).item() if b else None for b in bounds))


def _clip(ctx: EmitContext, node: Node, lo: float | None, hi: float | None) -> None:
    """Constant bounds: Relu6 and Relu where they match, else Maximum/Minimum."""
    x = ctx.raw(node.inputs[0])
    if lo == 0 and hi == 6 and x.dtype.is_floating:
        y = tf.nn.relu6(x)
    elif lo == 0 and hi is None:
        y = tf.nn.relu(x)
    else:
        y = x
        if lo is not None:
            y = tf.maximum(y, _c(x, lo))
        if hi is not None:
            y = tf.minimum(y, _c(x, hi))
    ctx.set(node.outputs[0], y, ctx.perm(node.inputs[0]))


# Element types TF has no dtype or no Cast kernel for: declined at conversion rather than failing at run time.
_NO_TF_CAST = {"int2", "uint2", "int4", "uint4", "float4_e2m1fn", "float8_e4m3fnuz", "float8_e5m2fnuz",
               "float8_e8m0fnu"}
_FLOAT8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}  # largest finite values


def _cast(ctx: EmitContext, node: Node, x: tf.Tensor, to: np.dtype) -> None:
    """ONNX Cast semantics on TF's Cast, which lacks ONNX's saturating float8 conversion."""
    src, dst = np.dtype(x.dtype.as_numpy_dtype), np.dtype(to)
    # TF's only 4-bit kernels are integer casts; keep the exact ones (to a wider int of a sign that holds them all)
    widening = (src.name == "int4" and dst.kind == "i") or (src.name == "uint4" and dst.kind in "iu")
    for dt in (src, dst):
        if dt.kind in "OSU" or (dt.name in _NO_TF_CAST and not widening):
            raise Decline(f"casts from {src.name} to {dst.name} (TF cannot represent or cast them)")
    dtype = tf.as_dtype(to)
    # float8 types exist from Cast-19 on, which is also where `saturate` comes in
    if dtype.name in _FLOAT8_MAX and x.dtype.is_floating and node.attrs["saturate"]:
        if x.dtype.name.startswith("float8"):  # TF compares no float8; float32 holds them exactly
            x = tf.cast(x, tf.float32)
        top = tf.constant(_FLOAT8_MAX[dtype.name], x.dtype)  # out of range and +-inf saturate; NaN stays
        x = tf.where(x > top, top, tf.where(x < -top, -top, x))
    ctx.set(node.outputs[0], tf.cast(x, dtype), ctx.perm(node.inputs[0]))


@op("Cast")
def cast(ctx: EmitContext, node: Node) -> None:
    _cast(ctx, node, ctx.raw(node.inputs[0]), helper.tensor_dtype_to_np_dtype(node.attrs["to"]))


@op("CastLike")
def cast_like(ctx: EmitContext, node: Node) -> None:
    _cast(ctx, node, ctx.raw(node.inputs[0]), ctx.raw(node.inputs[1]).dtype.as_numpy_dtype)


@op("Dropout")
def dropout(ctx: EmitContext, node: Node) -> None:
    """Before Dropout-12 graphport converts the inference form: the identity, and an all-true mask."""
    x = ctx.raw(node.inputs[0])
    ctx.set(node.outputs[0], tf.identity(x), ctx.perm(node.inputs[0]))
    if len(node.outputs) > 1 and node.outputs[1]:  # nothing is dropped: the mask is all true
        ctx.set(node.outputs[1], tf.ones_like(x, dtype=tf.bool), ctx.perm(node.inputs[0]))


_DEFAULT_RATIO = 0.5  # of Dropout-12's optional `ratio` input (an input, so no schema default_value covers it)


@op("Dropout", since=12)
def dropout_12(ctx: EmitContext, node: Node) -> None:
    """Dropout-12 on takes training_mode as an input; the ratio matters (and must be known) only in training."""
    training = ctx.static(node.inputs[2]).item() if opt_input(node, 2) else False
    ratio = (ctx.static(node.inputs[1]).item() if opt_input(node, 1) else _DEFAULT_RATIO) if training else 0
    if ratio != 0:  # silently passing x through would be wrong
        raise Decline("Dropout in training mode (random drops)")
    dropout(ctx, node)

