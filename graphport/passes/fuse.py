"""Fusions that remove whole ops: BatchNormalization, or a per-channel constant Mul and Add (how tf2onnx and
hand-written exports spell an inference BatchNorm), into the preceding Conv; constant zero Pad into Conv pads.

All keep ONNX semantics (up to float rounding of the folded weights) and only fire when the intermediate value
has a single consumer. Why the Mul/Add form matters: a DepthwiseConv2dNative followed by Mul and AddV2 keeps TF's
remapper from fusing bias and activation into the convolution; Keras's MobileNetV2 through tf2onnx had 17 such.
"""

from __future__ import annotations

import numpy as np

from graphport.ir.attrs import pad_attr
from graphport.ir.graph import Graph, Node, PassResult
from graphport.ir.op_arithmetic import batchnorm_affine


def _single_consumer(graph: Graph, users: dict[str, list[Node]], name: str) -> Node | None:
    nodes = users.get(name, [])
    return nodes[0] if len(nodes) == 1 and name not in graph.outputs else None


def fold_batchnorm_into_conv(graph: Graph) -> PassResult:
    users, producers = graph.consumers(), graph.producers()
    removed: set[int] = set()
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or len(bn.outputs) != 1 or bn.attrs.get("training_mode"):
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op_type != "Conv" or _single_consumer(graph, users, conv.outputs[0]) is not bn:
            continue
        w = graph.const(conv.inputs[1])
        params = [graph.const(i) for i in bn.inputs[1:5]]
        bias = graph.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        if w is None or any(p is None for p in params) or (len(conv.inputs) > 2 and conv.inputs[2] and bias is None):
            continue
        factor, shift = batchnorm_affine(*params, bn.attrs["epsilon"])
        b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
        new_w = (w * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = (b * factor + shift).astype(w.dtype)
        wname, bname = f"{conv.name}/folded_weight", f"{conv.name}/folded_bias"
        for name, arr in ((wname, new_w), (bname, new_b)):
            v = graph.value(name)
            v.const, v.dtype, v.shape = arr, arr.dtype, arr.shape
        conv.inputs = [conv.inputs[0], wname, bname]
        conv.outputs = list(bn.outputs)
        removed.add(id(bn))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return PassResult(graph, bool(removed))


def fold_channel_affine_into_conv(graph: Graph) -> PassResult:
    """Conv -> Mul by a constant per output channel (or a scalar) becomes Conv with scaled weights and bias; Conv ->
    Add of such a constant becomes Conv with that bias added. One pass in graph order: a folded Conv takes over its
    Mul's output, so that the Add after it folds too (Conv -> Mul -> Add folds whole)."""
    users, producers = graph.consumers(), graph.producers()
    removed: set[int] = set()
    for node in graph.nodes:
        conv = _fold_affine(graph, node, users, producers)
        if conv is not None:
            producers[node.outputs[0]] = conv
            removed.add(id(node))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return PassResult(graph, bool(removed))


def _fold_affine(graph: Graph, node: Node, users: dict, producers: dict) -> Node | None:
    """The Conv that `node` (a per-channel constant Mul or Add after it) was folded into, or None."""
    if node.op_type not in ("Mul", "Add") or len(node.inputs) != 2:
        return None
    for side in (0, 1):
        conv = producers.get(node.inputs[side])
        const = graph.const(node.inputs[1 - side])
        if conv is not None and conv.op_type == "Conv" and const is not None and \
                _single_consumer(graph, users, conv.outputs[0]) is node:
            break
    else:
        return None
    w = graph.const(conv.inputs[1])
    has_bias = len(conv.inputs) > 2 and bool(conv.inputs[2])
    bias = graph.const(conv.inputs[2]) if has_bias else None
    if w is None or w.dtype.kind != "f" or (has_bias and bias is None) or const.dtype != w.dtype:
        return None
    per_channel = _per_channel(const, w.shape[0], w.ndim)
    if per_channel is None:
        return None
    b = np.zeros(w.shape[0], np.float64) if bias is None else bias.astype(np.float64)
    if node.op_type == "Mul":
        new_w = (w.astype(np.float64) * per_channel.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = b * per_channel
    else:
        new_w, new_b = w, b + per_channel
    wname, bname = f"{node.outputs[0]}/folded_weight", f"{node.outputs[0]}/folded_bias"  # output names are unique
    for name, arr in ((wname, new_w), (bname, new_b.astype(w.dtype))):
        v = graph.value(name)
        v.const, v.dtype, v.shape = arr, arr.dtype, arr.shape
    conv.inputs = [conv.inputs[0], wname, bname]
    conv.outputs = list(node.outputs)
    return conv


def _per_channel(const: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """`const` as one float64 value per channel of an NC... tensor of `rank`, if it broadcasts as such."""
    if const.ndim > rank:
        return None
    shape = (1,) * (rank - const.ndim) + const.shape
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(const.reshape(-1).astype(np.float64), (channels,)).copy()


def fuse_pad_into_conv(graph: Graph) -> PassResult:
    """A zero constant Pad over spatial axes only, feeding one Conv, becomes part of the Conv's own pads."""
    users = graph.consumers()
    removed: set[int] = set()
    for pad in graph.nodes:
        if pad.op_type != "Pad" or pad.attrs["mode"] != "constant":
            continue
        conv = _single_consumer(graph, users, pad.outputs[0])
        if conv is None or conv.op_type != "Conv" or conv.inputs[0] != pad.outputs[0]:
            continue
        pads = _static_pads(graph, pad)
        if pads is None or conv.attrs["auto_pad"] != "NOTSET":
            continue
        rank = len(pads) // 2
        if rank < 3 or any(pads[i] or pads[i + rank] for i in (0, 1)) or min(pads) < 0:
            continue
        own = list(conv.attrs.get("pads", [0] * (2 * (rank - 2))))
        spatial = rank - 2
        conv.attrs["pads"] = [own[i] + pads[2 + i] for i in range(spatial)] + \
                             [own[spatial + i] + pads[rank + 2 + i] for i in range(spatial)]
        conv.inputs[0] = pad.inputs[0]
        removed.add(id(pad))
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    return PassResult(graph, bool(removed))


def _static_pads(graph: Graph, pad: Node) -> list[int] | None:
    """The pads of a Pad node whose pad value is zero, over all axes, or None if not static."""
    if len(pad.inputs) == 1:  # Pad-1/2: pads ('paddings' in Pad-1) and value are attributes
        return pad_attr(pad.attrs) if pad.attrs["value"] == 0 else None
    pads = graph.const(pad.inputs[1])
    value = graph.const(pad.inputs[2]) if len(pad.inputs) > 2 and pad.inputs[2] else np.zeros(1)
    if pads is None or value is None or pads.dtype == object or np.any(value != 0):
        return None
    if len(pad.inputs) > 3 and pad.inputs[3]:
        return None  # opset-18 axes: leave the general Pad in place
    return [int(p) for p in pads]
