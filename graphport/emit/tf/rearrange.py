"""Block rearrangements between space and depth (pixel shuffle), channels last."""

from __future__ import annotations

import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node


def _dims(x: tf.Tensor) -> list:
    """[N, H, W, C] as Reshape takes them: static ints, runtime scalars only where TF does not know the size."""
    static = x.shape.as_list()
    if None not in static[1:]:
        return [-1, *static[1:]]
    dyn = tf.shape(x)
    return [d if d is not None else dyn[i] for i, d in enumerate(static)]


@op("DepthToSpace")
def depth_to_space(ctx: EmitContext, node: Node) -> None:
    """DCR mode is TF's DepthToSpace on NHWC; CRD (channel-major blocks, PyTorch's pixel_shuffle) is a reshape to
    [N, H, W, C, b, b], a transpose and a reshape."""
    def crd(x: tf.Tensor, b: int) -> tf.Tensor:
        n, h, w, c = _dims(x)
        y = tf.transpose(_reshape(x, [n, h, w, c // (b * b), b, b]), (0, 1, 4, 2, 5, 3))
        return _reshape(y, [n, h * b, w * b, c // (b * b)])

    _rearrange(ctx, node, tf.nn.depth_to_space, crd)


@op("SpaceToDepth")
def space_to_depth(ctx: EmitContext, node: Node) -> None:
    """DCR (ONNX's only order before SpaceToDepth-28: row offset, column offset, channel) is TF's SpaceToDepth on
    NHWC; CRD puts the channel first: reshape to [N, H/b, b, W/b, b, C], transpose, reshape."""
    def crd(x: tf.Tensor, b: int) -> tf.Tensor:
        n, h, w, c = _dims(x)
        y = tf.transpose(_reshape(x, [n, h // b, b, w // b, b, c]), (0, 1, 3, 5, 2, 4))
        return _reshape(y, [n, h // b, w // b, c * b * b])

    _rearrange(ctx, node, tf.nn.space_to_depth, crd)


def _rearrange(ctx: EmitContext, node: Node, dcr, crd) -> None:
    x = ctx.channels_last(node.inputs[0])
    b = int(node.attrs["blocksize"])
    y = dcr(x, b) if node.attrs.get("mode", "DCR") == "DCR" else crd(x, b)
    ctx.set(node.outputs[0], y, channels_last(4))


def _reshape(x: tf.Tensor, dims: list) -> tf.Tensor:
    return tf.reshape(x, dims if all(isinstance(d, int) for d in dims) else tf.stack(dims))
