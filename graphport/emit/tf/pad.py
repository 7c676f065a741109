"""Pad in every ONNX form: attributes (Pad-1/2) or inputs (Pad-11 on, with axes from 18); constant and reflect
map to TF's Pad, edge and wrap (which TF lacks) to index gathers.

Static constant and reflect pads apply to the tensor in the layout it is stored in (channels last after a conv),
their pairs permuted to match: in ONNX order, a Pad between a conv and a MaxPool (Keras's ResNet50 through
tf2onnx) cost a Transpose on each side."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.emit.tf.tensor import runtime_input, runtime_vector
from graphport.ir.attrs import pad_attr
from graphport.ir.graph import Node


def _pad_mode(node: Node) -> str:
    mode = node.attrs["mode"]
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise Decline(f"Pad mode '{mode}'")
    return mode


@op("Pad")
def pad_1(ctx: EmitContext, node: Node) -> None:
    """Pad-1/2: pads and value are attributes."""
    mode = _pad_mode(node)
    rank = ctx.rank(node.inputs[0])
    pads = pad_attr(node.attrs)
    value = tf.constant(node.attrs["value"], ctx.raw(node.inputs[0]).dtype)
    _pad(ctx, node, mode, [[pads[a], pads[a + rank]] for a in range(rank)], value)


@op("Pad", since=11)
def pad(ctx: EmitContext, node: Node) -> None:
    """Pad-11 on: pads, value and (from 18) axes are inputs."""
    mode = _pad_mode(node)
    rank = ctx.rank(node.inputs[0])
    dtype = ctx.raw(node.inputs[0]).dtype
    value = tf.constant(0, dtype)
    if opt_input(node, 2):
        value = tf.cast(tf.reshape(ctx.onnx_order(node.inputs[2]), []), dtype)
    if runtime_input(ctx, node, 1) or runtime_input(ctx, node, 3):
        paddings = _runtime_paddings(ctx, node, rank)
    else:
        pads = [int(p) for p in ctx.static(node.inputs[1])]
        axes = [int(a) % rank for a in ctx.static(opt_input(node, 3))] if opt_input(node, 3) else list(range(rank))
        paddings = [[0, 0] for _ in range(rank)]
        for i, a in enumerate(axes):
            paddings[a] = [pads[i], pads[i + len(axes)]]
    _pad(ctx, node, mode, paddings, value)


def _pad(ctx: EmitContext, node: Node, mode: str, paddings: list[list[int]] | tf.Tensor, value: tf.Tensor) -> None:
    name = node.inputs[0]
    if mode in ("edge", "wrap"):  # negative pads crop here, exactly as ONNX's
        ctx.set(node.outputs[0], _index_pad(ctx.onnx_order(name), paddings, mode == "wrap"))
        return
    if isinstance(paddings, list) and min(min(p) for p in paddings) < 0:
        raise Decline("negative pads (cropping)")  # at run time TF's Pad rejects them with an error instead
    perm = ctx.perm(name) if isinstance(paddings, list) else None
    x = ctx.raw(name) if perm is not None else ctx.onnx_order(name)
    if perm is not None:  # TF axis i holds ONNX axis perm[i]
        paddings = [paddings[a] for a in perm]
    ctx.set(node.outputs[0], tf.pad(x, paddings, mode="REFLECT" if mode == "reflect" else "CONSTANT",
                                    constant_values=value if mode == "constant" else 0), perm)


def _runtime_paddings(ctx: EmitContext, node: Node, rank: int) -> tf.Tensor:
    """[rank, 2] paddings from runtime pads (begins then ends) over the optional, possibly runtime, axes."""
    pads, n2 = runtime_vector(ctx, node.inputs[1])
    pairs = tf.transpose(tf.reshape(pads, [2, n2 // 2]))
    if not opt_input(node, 3):
        return pairs
    axes = runtime_vector(ctx, node.inputs[3])[0]
    axes = tf.where(axes < 0, axes + rank, axes)
    return tf.scatter_nd(axes[:, None], pairs, tf.constant([rank, 2], tf.int64))


def _index_pad(x: tf.Tensor, paddings: list[list[int]] | tf.Tensor, wrap: bool) -> tf.Tensor:
    """Edge and wrap padding, which TF's Pad lacks: gather each axis at clamped (edge) or cyclic (wrap) indices."""
    for axis in range(x.shape.rank):
        b, e = paddings[axis][0], paddings[axis][1]
        dim = x.shape[axis]
        if isinstance(b, int) and dim is not None:
            if not b and not e:
                continue
            idx = np.arange(-b, dim + e)
            x = tf.gather(x, tf.constant(idx % dim if wrap else np.clip(idx, 0, dim - 1), tf.int64), axis=axis)
            continue
        dim = tf.shape(x, out_type=tf.int64)[axis]
        idx = tf.range(-tf.cast(b, tf.int64), dim + tf.cast(e, tf.int64))
        x = tf.gather(x, tf.math.floormod(idx, dim) if wrap else tf.clip_by_value(idx, 0, dim - 1), axis=axis)
    return x
