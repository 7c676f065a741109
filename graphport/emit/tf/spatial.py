"""Padding arithmetic shared by convolutions and pools (ONNX pads/auto_pad/ceil_mode -> TF SAME/VALID/Pad)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from graphport.emit.tf.decline import Decline
from graphport.ir.graph import Node


def onnx_pads(node: Node, sizes: list[int | None], kernel: list[int], strides: list[int], dilations: list[int],
              ceil_mode: bool = False) -> tuple[list[int], list[int]]:
    """(begin, end) pads per spatial axis, with ceil_mode turned into extra end padding."""
    n = len(kernel)
    auto = node.attrs["auto_pad"]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if any(size is None and st != 1 for size, st in zip(sizes, strides)):
            raise Decline("auto_pad SAME with a stride over a dynamic spatial size")
        begin, end = same_pads(sizes, kernel, strides, dilations)
        return (begin, end) if auto == "SAME_UPPER" else (end, begin)
    pads = [0] * (2 * n) if auto == "VALID" else list(node.attrs.get("pads", [0] * (2 * n)))
    begin, end = pads[:n], pads[n:]
    if ceil_mode:
        if any(s is None for s in sizes):
            raise Decline("ceil_mode over a dynamic spatial size")
        for i in range(n):
            k = (kernel[i] - 1) * dilations[i] + 1
            span = sizes[i] + begin[i] + end[i] - k
            out = math.ceil(span / strides[i]) + 1
            if (out - 1) * strides[i] >= sizes[i] + begin[i]:
                out -= 1
            end[i] += max((out - 1) * strides[i] + k - (sizes[i] + begin[i] + end[i]), 0)
    return begin, end


def same_pads(sizes: list[int | None], kernel: list[int], strides: list[int],
              dilations: list[int]) -> tuple[list[int], list[int]]:
    """What TF's SAME padding adds before and after each spatial axis (the extra pixel goes at the end). At stride 1
    that is the window's span less one whatever the size, so a dynamic size (None) needs no value there."""
    begin, end = [], []
    for i, size in enumerate(sizes):
        k = (kernel[i] - 1) * dilations[i] + 1
        if strides[i] == 1:
            total = k - 1
        else:
            total = max((math.ceil(size / strides[i]) - 1) * strides[i] + k - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin, end


def same_by_zero_taps(sizes: list[int | None], kernel: list[int], begin: list[int], end: list[int],
                      strides: list[int]) -> list[tuple[int, int]] | None:
    """Zero taps to add before and after the kernel on each spatial axis so that TF's SAME padding computes the
    ONNX padded conv (undilated), or None. A stride-2 3x3 conv with pads (1, 1) on an even input starts its windows
    one row above SAME's; a 4x4 kernel whose last row and column are zero starts there under SAME and has the same
    outputs, with no `Pad` before it. For depthwise convs that is cheaper than the Pad (a copy of the whole input):
    measured 0.59-0.99x the time with oneDNN off, 0.80-0.87x with it on (docs/performance.md)."""
    taps = []
    for size, k, b, e, s in zip(sizes, kernel, begin, end, strides, strict=True):
        if size is None:
            return None
        out = (size + b + e - k) // s + 1
        if math.ceil(size / s) != out:
            return None
        fits = [(before, after) for before in range(s + 1) for after in range(s + 1)
                if same_pads([size], [k + before + after], [s], [1])[0][0] - before == b]
        if not fits:
            return None
        taps.append(min(fits, key=sum))
    return taps


def padding_mode(x: tf.Tensor, begin: list[int], end: list[int], kernel: list[int], strides: list[int],
                 dilations: list[int], fill: float = 0.0, same_ok: bool = True) -> tuple[tf.Tensor, str]:
    """Choose VALID, SAME, or an explicit Pad plus VALID for a channels-last tensor `x`."""
    if not any(begin) and not any(end):
        return x, "VALID"
    sizes = x.shape.as_list()[1:-1]
    if same_ok and None not in sizes and (begin, end) == tuple(map(list, same_pads(sizes, kernel, strides,
                                                                                     dilations))):
        return x, "SAME"
    paddings = [[0, 0]] + [[b, e] for b, e in zip(begin, end)] + [[0, 0]]
    if fill == 0.0:
        return tf.pad(x, paddings), "VALID"
    return tf.pad(x, paddings, constant_values=tf.constant(fill, x.dtype)), "VALID"


def lowest(dtype: tf.DType) -> float:
    return float(np.finfo(dtype.as_numpy_dtype).min) if dtype.is_floating else float(dtype.min)


def spatial_attrs(node: Node, n: int) -> tuple[list[int], list[int]]:
    return list(node.attrs.get("strides", [1] * n)), list(node.attrs.get("dilations", [1] * n))
