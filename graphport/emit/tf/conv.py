"""Conv (1-D, 2-D, 3-D; grouped and depthwise) and ConvTranspose (1-D, 2-D) in channels-last layout with native TF
kernels."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.emit.tf.spatial import onnx_pads, padding_mode, same_by_zero_taps, same_pads, spatial_attrs
from graphport.ir.graph import Node
from graphport.ir.symbolic import Sym


@op("Conv")
def conv(ctx: EmitContext, node: Node) -> None:
    w = ctx.const(node.inputs[1])
    if w is None:  # runtime weights: only the plain (ungrouped) kernels take a filter tensor
        w = ctx.onnx_order(node.inputs[1])
        if None in w.shape.as_list() or node.attrs["group"] != 1:
            raise Decline("runtime weights of a grouped convolution or of unknown shape")
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    spatial = w.ndim - 2
    if spatial not in (1, 2, 3):
        raise Decline(f"{spatial}-D convolution")
    strides, dilations = spatial_attrs(node, spatial)
    kernel = list(w.shape[2:])
    x = ctx.channels_last(node.inputs[0])
    begin, end = onnx_pads(node, x.shape.as_list()[1:-1], kernel, strides, dilations)
    if spatial == 1:  # run 1-D convs as 2-D with a unit height, as tf.nn.conv1d does
        x, w = tf.expand_dims(x, 1), w[:, :, None, :]
        strides, dilations, kernel, begin, end = [1] + strides, [1] + dilations, [1] + kernel, [0] + begin, [0] + end
    taps = _depthwise_zero_taps(x, w, node.attrs["group"], begin, end, strides, dilations)
    if taps is not None:  # SAME over a kernel grown with zero taps instead of a Pad (see same_by_zero_taps)
        w, padding = np.pad(w, ((0, 0), (0, 0), *taps)), "SAME"
    else:
        x, padding = padding_mode(x, begin, end, kernel, strides, dilations)
    y = _grouped(x, w, node.attrs["group"], strides, dilations, padding)
    if has_bias:
        y = tf.nn.bias_add(y, tf.cast(ctx.onnx_order(node.inputs[2]), y.dtype))
    if spatial == 1:
        y = tf.squeeze(y, [1])
    ctx.set(node.outputs[0], y, channels_last(spatial + 2))


def _depthwise_zero_taps(x: tf.Tensor, w: np.ndarray | tf.Tensor, group: int, begin: list[int], end: list[int],
                         strides: list[int], dilations: list[int]) -> list[tuple[int, int]] | None:
    """The zero taps that replace a depthwise conv's Pad (`same_by_zero_taps`; none where SAME fits as it is), or
    None (no padding, not an undilated depthwise conv with equal strides, or no such taps)."""
    if not _is_depthwise(x, w, group) or dilations != [1, 1] or strides[0] != strides[1] or not any(begin + end):
        return None
    return same_by_zero_taps(x.shape.as_list()[1:-1], list(w.shape[2:]), begin, end, strides)


def _is_depthwise(x: tf.Tensor, w: np.ndarray | tf.Tensor, group: int) -> bool:
    """One group per input channel of a 2-D conv with constant weights: a DepthwiseConv2dNative."""
    return (isinstance(w, np.ndarray) and w.ndim == 4 and group != 1 and w.shape[1] == 1 and w.shape[0] % group == 0
            and x.shape[-1] == group)


def _grouped(x: tf.Tensor, w: np.ndarray | tf.Tensor, group: int, strides: list[int], dilations: list[int],
             padding: str) -> tf.Tensor:
    """group 1: Conv2D/Conv3D; one group per input channel: DepthwiseConv2dNative; otherwise split + concat."""
    if group == 1:
        return _dense(x, w, strides, dilations, padding)
    if _is_depthwise(x, w, group):
        filt = np.transpose(w.reshape(group, w.shape[0] // group, *w.shape[2:]), (2, 3, 0, 1))
        if dilations == [1, 1]:
            return _depthwise(x, tf.constant(filt), strides, padding)
        if strides != [1, 1]:  # the depthwise kernels stride or dilate, not both: spread the taps with zeros
            return _depthwise(x, tf.constant(_spread(filt, dilations)), strides, padding)
        return tf.nn.depthwise_conv2d(x, tf.constant(filt), [1, 1, 1, 1], padding, dilations=dilations)
    parts = tf.split(x, group, axis=-1)
    ws = np.split(w, group, axis=0)
    return tf.concat([_dense(p, wg, strides, dilations, padding) for p, wg in zip(parts, ws)], axis=-1)


def _depthwise(x: tf.Tensor, filt: tf.Tensor, strides: list[int], padding: str) -> tf.Tensor:
    """DepthwiseConv2dNative. TF's Eigen kernel (oneDNN off, and libtensorflow 2.5) takes equal row and column
    strides only: a unit axis with a unit kernel (1-D convs) strides alike at no cost; otherwise the conv runs at
    stride 1 over explicit pads and the strided rows and columns are sliced out."""
    if strides[0] != strides[1] and x.shape[1] == 1 and filt.shape[0] == 1 and padding == "VALID":
        strides = [strides[1], strides[1]]
    if strides[0] == strides[1]:
        return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=filt, strides=[1, *strides, 1], padding=padding)
    if padding == "SAME":
        begin, end = same_pads(x.shape.as_list()[1:-1], filt.shape.as_list()[:2], strides, [1, 1])
        x, padding = tf.pad(x, [[0, 0], *zip(begin, end), [0, 0]]), "VALID"
    y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=filt, strides=[1, 1, 1, 1], padding=padding)
    return y[:, ::strides[0], ::strides[1], :]


def _dense(x: tf.Tensor, w: np.ndarray | tf.Tensor, strides: list[int], dilations: list[int],
           padding: str) -> tf.Tensor:
    order = (*range(2, w.ndim), 1, 0)
    filt = tf.constant(np.transpose(w, order)) if isinstance(w, np.ndarray) else tf.transpose(w, order)
    if w.ndim == 4:
        return tf.raw_ops.Conv2D(input=x, filter=filt, strides=[1, *strides, 1], padding=padding,
                                 dilations=[1, *dilations, 1])
    if any(d != 1 for d in dilations):  # TF's CPU Conv3D kernel rejects dilations: spread the kernel with zeros
        if not isinstance(w, np.ndarray):
            raise Decline("dilated 3-D convolution with runtime weights")
        filt, dilations = tf.constant(_spread(np.transpose(w, (2, 3, 4, 1, 0)), dilations)), [1, 1, 1]
    return tf.raw_ops.Conv3D(input=x, filter=filt, strides=[1, *strides, 1], padding=padding,
                             dilations=[1, *dilations, 1])


def _spread(filt: np.ndarray, dilations: list[int]) -> np.ndarray:
    """A channels-last filter (spatial axes first) with `d - 1` zero taps between its taps: the undilated kernel
    of the same dilated convolution."""
    n = len(dilations)
    spread = np.zeros((*[(k - 1) * d + 1 for k, d in zip(filt.shape[:n], dilations)], *filt.shape[n:]), filt.dtype)
    spread[tuple(slice(None, None, d) for d in dilations)] = filt
    return spread


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
        w = np.transpose(_spread(np.transpose(w, (2, 3, 0, 1)), dil), (2, 3, 0, 1))
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

