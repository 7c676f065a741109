"""GroupNorm as exported (Reshape [N, G, -1] -> InstanceNormalization -> Reshape back) over split channel groups.

Why: both of torch's exporters write nn.GroupNorm that way. The first Reshape merges each group's channels with
the spatial axes, which over channels-last data (every conv's output) needs the ONNX memory order: a Transpose
before it and another before the next conv, two per GroupNorm (PoolFormer: 48 of its 61). Splitting the channels
instead ([N, G, C/G, *spatial]) keeps the layout (emit/tf/reshape.py: [N, *spatial, G, C/G] in memory), the
statistics become means over the split axes (which the emitter remaps instead of restoring the layout), and the
Reshape back to [N, C, *spatial] merges neighbours again: no Transpose is left.
"""

from __future__ import annotations

import numpy as np

from graphport.ir.attrs import schema_defaults
from graphport.ir.graph import Graph, Node, PassResult


def group_norm_over_split_channels(graph: Graph) -> PassResult:
    """Rewrite `Reshape(x, [N, G, -1]) -> InstanceNormalization(scale, bias) -> Reshape(to x's shape)` over x of
    rank >= 3 with static channels and spatial sizes into the same arithmetic on x split to [N, G, C/G, *spatial]:
    mean and variance over the axes after G, then the per-group scale and bias. The last Reshape keeps its target."""
    users, producers = graph.consumers(), graph.producers()
    out: list[Node] = []
    removed: set[int] = set()
    for node in graph.nodes:
        match = _match(graph, users, producers, node) if node.op_type == "Reshape" else None
        if match is not None:
            first, norm = match
            removed.update((id(first), id(norm)))
            out.extend(_split_group_norm(graph, first, norm))  # before `node`, after x's producer
            node.inputs = [f"{norm.name}/grouped/y", *node.inputs[1:]]
        out.append(node)
    graph.nodes = [n for n in out if id(n) not in removed]
    return PassResult(graph, bool(removed))


def _match(graph: Graph, users: dict[str, list[Node]], producers: dict[str, Node],
           last: Node) -> tuple[Node, Node] | None:
    """(first Reshape, InstanceNormalization) when `last` ends an exported GroupNorm, else None."""
    chain = graph.single_use_chain(last, ("Reshape", "InstanceNormalization"), users, producers)
    if chain is None:
        return None
    first, norm = chain
    x, grouped, y = (graph.values[n] for n in (first.inputs[0], first.outputs[0], last.outputs[0]))
    if x.dtype is None or not np.issubdtype(x.dtype, np.floating):
        return None
    if len(x.shape) < 3 or len(grouped.shape) != 3 or tuple(y.shape) != tuple(x.shape):
        return None
    channels, groups = x.shape[1], grouped.shape[1]
    sizes = [channels, groups, *x.shape[2:]]
    if not all(isinstance(d, int) and d > 0 for d in sizes) or channels % groups:
        return None
    scale, bias = (graph.const(n) for n in norm.inputs[1:3])
    if scale is None or bias is None or scale.shape != (groups,) or bias.shape != (groups,):
        return None
    return first, norm


def _split_group_norm(graph: Graph, first: Node, norm: Node) -> list[Node]:
    """The nodes computing `norm`'s result over x split to [N, G, C/G, *spatial], ending in `{norm}/grouped/y`."""
    x = graph.values[first.inputs[0]]
    scale, bias = (graph.const(n) for n in norm.inputs[1:3])
    groups, rank = scale.shape[0], len(x.shape) + 1
    split_shape = (x.shape[0], groups, x.shape[1] // groups, *x.shape[2:])
    axes = list(range(2, rank))
    p = f"{norm.name}/grouped"
    dtype = x.dtype

    def const(name: str, arr: np.ndarray) -> str:
        v = graph.value(f"{p}/{name}")
        v.const, v.dtype, v.shape = arr, arr.dtype, arr.shape
        return v.name

    def value(name: str, shape: tuple) -> str:
        v = graph.value(f"{p}/{name}")
        v.dtype, v.shape = dtype, shape
        return v.name

    kept = (x.shape[0], groups, *[1] * (rank - 2))
    per_group = (1, groups, *[1] * (rank - 2))
    target = const("shape", np.array([0, *split_shape[1:]], np.int64))
    eps = const("epsilon", np.array(norm.attrs["epsilon"], dtype))
    g_scale = const("scale", scale.reshape(per_group).astype(dtype))
    g_bias = const("bias", bias.reshape(per_group).astype(dtype))

    def reduce_mean(name: str, src: str) -> Node:
        attrs = {**schema_defaults("ReduceMean", graph.opset), "keepdims": 1}
        if graph.opset >= 18:  # axes became an input in ReduceMean-18
            return Node("ReduceMean", f"{p}/{name}", [src, const(f"{name}_axes", np.array(axes, np.int64))],
                        [value(name, kept)], attrs)
        return Node("ReduceMean", f"{p}/{name}", [src], [value(name, kept)], {**attrs, "axes": axes})

    split = value("x", split_shape)
    return [
        Node("Reshape", f"{p}/split", [first.inputs[0], target], [split], {}),
        reduce_mean("mean", split),
        Node("Sub", f"{p}/centred", [split, f"{p}/mean"], [value("centred", split_shape)]),
        Node("Mul", f"{p}/squared", [f"{p}/centred", f"{p}/centred"], [value("squared", split_shape)]),
        reduce_mean("variance", f"{p}/squared"),
        Node("Add", f"{p}/variance_eps", [f"{p}/variance", eps], [value("variance_eps", kept)]),
        Node("Sqrt", f"{p}/std", [f"{p}/variance_eps"], [value("std", kept)]),
        Node("Div", f"{p}/normed", [f"{p}/centred", f"{p}/std"], [value("normed", split_shape)]),
        Node("Mul", f"{p}/scaled", [f"{p}/normed", g_scale], [value("scaled", split_shape)]),
        Node("Add", f"{p}/y", [f"{p}/scaled", g_bias], [value("y", split_shape)]),
    ]
