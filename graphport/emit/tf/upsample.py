"""Decoder ops: Resize/Upsample and ConvTranspose.

Resize is emitted as one Gather per resized axis (nearest) or two Gathers and a weighted sum (linear), with the
indices and weights computed now in numpy from ONNX's own coordinate formulas. TF's resize kernels each implement
one or two coordinate conventions; this way every ONNX mode that is separable is matched exactly, on any layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node
from graphport.ir.symbolic import Sym
from graphport.passes.infer import canonical

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _source_coords(mode: str, out: int, size: int, scale: float) -> np.ndarray:
    """ONNX's coordinate_transformation_mode: output index -> input coordinate, in float64."""
    x = np.arange(out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjust = out / (scale * size)
        return size / 2 * (1 - adjust) + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "align_corners":
        return x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if mode == "asymmetric":
        return x / scale
    return (x + 0.5) / scale  # tf_half_pixel_for_nn


def _nearest_index(coords: np.ndarray, mode: str, size: int) -> np.ndarray:
    frac = coords - np.floor(coords)
    if mode == "round_prefer_floor":
        idx = np.where(frac == 0.5, np.floor(coords), np.round(coords))
    elif mode == "round_prefer_ceil":
        idx = np.where(frac == 0.5, np.ceil(coords), np.round(coords))
    elif mode == "floor":
        idx = np.floor(coords)
    else:
        idx = np.ceil(coords)
    return np.clip(idx, 0, size - 1).astype(np.int64)


Targets = tuple[list[float] | None, np.ndarray | None, list[int] | None]  # scales, sizes, axes


def _plan(ctx: EmitContext, node: Node, x_shape: list, targets: Targets) -> tuple[list[int], list[float]]:
    """Output sizes and scales per ONNX axis, from scales or sizes (constants at conversion time)."""
    rank = len(x_shape)
    scales, sizes, axes = targets
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    full_scales, full_sizes = [1.0] * rank, list(x_shape)
    for i, a in enumerate(axes):
        size = x_shape[a]
        if sizes is not None:
            target = sizes.ravel()[i]
            ir_dim = (ctx.graph.values[node.inputs[0]].shape or [None] * rank)[a]
            if isinstance(target, Sym) or size is None:
                if ir_dim is not None and canonical(ctx.graph, target) == ir_dim:
                    continue  # e.g. sizes = [batch, C, 2H, 2W] from Shape(x): the batch axis is kept
                raise Decline(f"resizing axis {a}, whose size is known only at run time")
            full_sizes[a], full_scales[a] = int(target), int(target) / size
        else:
            s = scales[i]
            if s == 1.0:
                continue
            if size is None:
                raise Decline(f"resizing axis {a}, whose size is known only at run time")
            full_sizes[a], full_scales[a] = math.floor(size * s), s
    return full_sizes, full_scales


def _scales(values: object) -> Targets:
    return [float(s) for s in np.asarray(values).ravel()], None, None


def _scales_or_sizes(ctx: EmitContext, node: Node, axes: list[int] | None = None) -> Targets:
    """Resize-11 on: constant scales (input 2, possibly empty) or else constant sizes (input 3)."""
    scales_in, sizes_in = opt_input(node, 2), opt_input(node, 3)
    arr = ctx.static(scales_in) if scales_in and (ctx.const(scales_in) is None or ctx.const(scales_in).size) \
        else None
    scales = [float(s) for s in arr.ravel()] if arr is not None else None
    sizes = ctx.static(sizes_in) if sizes_in and scales is None else None
    if scales is None and sizes is None:
        raise Decline("Resize without constant scales or sizes")
    return scales, sizes, axes


@op("Upsample", since=7)
def upsample_7(ctx: EmitContext, node: Node) -> None:
    """Upsample-7: scales is an attribute; nearest picks floor(asymmetric coordinate)."""
    _resize(ctx, node, "asymmetric", "floor", lambda: _scales(node.attrs["scales"]))


@op("Upsample", since=9)
@op("Resize", since=10)
def upsample(ctx: EmitContext, node: Node) -> None:
    """Upsample-9 and Resize-10: scales is input 1, with Upsample's coordinates."""
    _resize(ctx, node, "asymmetric", "floor", lambda: _scales(ctx.static(node.inputs[1])))


@op("Resize", since=11)
def resize(ctx: EmitContext, node: Node) -> None:
    """Resize-11 on: roi, scales, sizes inputs; coordinate_transformation_mode and nearest_mode."""
    _resize(ctx, node, node.attrs["coordinate_transformation_mode"], node.attrs["nearest_mode"],
            lambda: _scales_or_sizes(ctx, node))


@op("Resize", since=18)
def resize_18(ctx: EmitContext, node: Node) -> None:
    """Resize-18 on adds axes, antialias and keep_aspect_ratio_policy."""
    def targets() -> Targets:
        scales, sizes, axes = _scales_or_sizes(ctx, node, node.attrs.get("axes"))
        if sizes is not None and node.attrs["keep_aspect_ratio_policy"] != "stretch":
            raise Decline("keep_aspect_ratio_policy other than 'stretch'")
        return scales, sizes, axes

    _resize(ctx, node, node.attrs["coordinate_transformation_mode"], node.attrs["nearest_mode"], targets,
            antialias=bool(node.attrs["antialias"]))


def _resize(ctx: EmitContext, node: Node, coord: str, nearest: str, targets: Callable[[], Targets],
            antialias: bool = False) -> None:
    name = node.inputs[0]
    mode = node.attrs["mode"]
    if mode not in ("nearest", "linear", "bilinear", "trilinear"):
        raise Decline(f"Resize mode '{mode}' (supported: nearest, linear)")
    if antialias:
        raise Decline("Resize with antialias=1")
    if coord not in _COORD_MODES:
        raise Decline(f"Resize coordinate_transformation_mode '{coord}' (supported: {', '.join(_COORD_MODES)})")
    if mode == "nearest" and nearest not in _NEAREST:
        raise Decline(f"Resize nearest_mode '{nearest}'")
    x = ctx.raw(name)
    perm = ctx.perm(name) or tuple(range(x.shape.rank))
    shape = ctx.shape_ints(name)
    sizes, scales = _plan(ctx, node, shape, targets())
    for a, (out, size, scale) in enumerate(zip(sizes, shape, scales)):
        if out == size:
            continue
        coords = _source_coords(coord, out, size, scale)
        axis = perm.index(a)
        if mode == "nearest":
            x = tf.gather(x, tf.constant(_nearest_index(coords, nearest, size)), axis=axis)
            continue
        lo = np.floor(coords)
        w1 = coords - lo
        i0, i1 = (np.clip(i, 0, size - 1).astype(np.int64) for i in (lo, lo + 1))
        bshape = [1] * x.shape.rank
        bshape[axis] = out
        dt = x.dtype.as_numpy_dtype
        x = tf.gather(x, tf.constant(i0), axis=axis) * tf.constant((1 - w1).reshape(bshape).astype(dt)) + \
            tf.gather(x, tf.constant(i1), axis=axis) * tf.constant(w1.reshape(bshape).astype(dt))
    ctx.set(node.outputs[0], x, ctx.perm(name))


@op("ConvTranspose")
def conv_transpose(ctx: EmitContext, node: Node) -> None:
    """Conv2DBackpropInput over the full (unpadded) output, then ONNX's pads cropped and output_padding added."""
    w = ctx.const(node.inputs[1])
    if w is None or w.dtype == object:  # runtime weights: the kernel takes a filter tensor as well
        w = ctx.onnx_order(node.inputs[1])
        if None in w.shape.as_list():
            raise Decline("runtime ConvTranspose weights of unknown shape")
    spatial = w.shape.rank - 2 if isinstance(w, tf.Tensor) else w.ndim - 2
    if spatial not in (1, 2):
        raise Decline(f"{spatial}-D ConvTranspose")
    group = int(node.attrs["group"])
    if "output_shape" in node.attrs:
        raise Decline("ConvTranspose with output_shape")
    auto = node.attrs["auto_pad"]
    if auto not in ("NOTSET", "VALID"):
        raise Decline(f"ConvTranspose auto_pad {auto}")
    strides = list(node.attrs.get("strides", [1] * spatial))
    dil = list(node.attrs.get("dilations", [1] * spatial))
    pads = [0] * (2 * spatial) if auto == "VALID" else list(node.attrs.get("pads", [0] * (2 * spatial)))
    out_pad = list(node.attrs.get("output_padding", [0] * spatial))
    x = ctx.channels_last(node.inputs[0])
    if spatial == 1:
        x, w = tf.expand_dims(x, 1), (tf.expand_dims(w, 2) if isinstance(w, tf.Tensor) else w[:, :, None, :])
        strides, dil, pads, out_pad = [1] + strides, [1] + dil, [0, pads[0], 0, pads[1]], [0] + out_pad
    if any(d != 1 for d in dil):  # spread the kernel with zeros: the CPU kernel has no dilated backprop
        if isinstance(w, tf.Tensor):
            raise Decline("dilated ConvTranspose with runtime weights")
        spread = np.zeros((*w.shape[:2], *[(k - 1) * d + 1 for k, d in zip(w.shape[2:], dil)]), w.dtype)
        spread[:, :, ::dil[0], ::dil[1]] = w
        w = spread
    sizes = x.shape.as_list()[1:3]
    if None in sizes:
        raise Decline("ConvTranspose over a dynamic spatial size")
    kernel = [int(k) for k in w.shape[2:]]
    full = [s * (n - 1) + k for s, n, k in zip(strides, sizes, kernel)]
    batch = ctx.graph.values[node.inputs[0]].shape
    b = batch[0] if batch else None
    if isinstance(b, str):
        b = ctx.sym_value(ctx.graph.sym(b))
    elif isinstance(b, Sym):
        b = ctx.sym_value(b)
    elif b is None:
        b = tf.shape(x, out_type=tf.int64)[0]
    else:
        b = tf.constant(int(b), tf.int64)
    out_sizes = tf.cast(tf.stack([b] + [tf.constant(v, tf.int64) for v in full + [int(w.shape[1])]]), tf.int32)
    # one backprop per group: W is [Cin, Cout/group, kH, kW], split along Cin
    runtime = isinstance(w, tf.Tensor)
    parts = tf.split(w, group, axis=0) if runtime else np.split(w, group, axis=0)
    xs = tf.split(x, group, axis=-1) if group > 1 else [x]
    ys = [tf.raw_ops.Conv2DBackpropInput(
        input_sizes=out_sizes, out_backprop=xg, strides=[1, *strides, 1], padding="VALID",
        filter=tf.transpose(wg, (2, 3, 1, 0)) if runtime else tf.constant(np.transpose(wg, (2, 3, 1, 0))))
        for xg, wg in zip(xs, parts)]
    y = ys[0] if group == 1 else tf.concat(ys, axis=-1)
    begin, end = pads[:2], pads[2:]
    crop = [slice(None)] + [slice(bg, f - max(e - op, 0)) for bg, e, op, f in zip(begin, end, out_pad, full)]
    y = y[tuple(crop + [slice(None)])]
    extra = [max(op - e, 0) for e, op in zip(end, out_pad)]
    if any(extra):
        y = tf.pad(y, [[0, 0], [0, extra[0]], [0, extra[1]], [0, 0]])
    if len(node.inputs) > 2 and node.inputs[2]:
        y = tf.nn.bias_add(y, tf.cast(ctx.onnx_order(node.inputs[2]), y.dtype))
    if spatial == 1:
        y = tf.squeeze(y, [1])
    ctx.set(node.outputs[0], y, channels_last(spatial + 2))

