"""Keep Grappler's oneDNN remapper from building a node with no op: Add(BiasAdd(DepthwiseConv2dNative(x), b), y)
becomes BiasAdd(AddV2(DepthwiseConv2dNative(x), y), b).

Why: with oneDNN on (TF's default on x86 since 2.9), the remapper fuses "contraction + BiasAdd + Add" and accepts a
depthwise conv as the contraction, but the function that builds the fused node names an op only for Conv2D,
MatMul and Conv3D. The next pass rejects the op-less node ("Node .../Add has an empty op name", logged as errors
by TF 2.17 and 2.21 at load), Grappler throws its whole result away, and the graph runs with no fusion at all
(efficientformerv2: 0 fused ops, 42 with this rewrite). Adding y before the bias is the same sum for any shapes
the original Add accepted (the bias runs along the channel axis, which broadcasting leaves as it is), and the
pattern is gone, so the remapper's other fusions survive. Found in TF 2.17.1's logs on graphport's graphs.
"""

from __future__ import annotations

from collections import Counter

from tensorflow.core.framework import graph_pb2, node_def_pb2


def move_depthwise_bias_past_add(gd: graph_pb2.GraphDef) -> int:
    """Rewrite every such Add in place (its name kept, so fetches still find it); returns how many."""
    by_name = {n.name: n for n in gd.node}
    readers = Counter(i.lstrip("^").split(":")[0] for n in gd.node for i in n.input)
    dropped, added = set(), {}
    for add in gd.node:
        if add.op not in ("Add", "AddV2") or len(add.input) != 2:
            continue
        for port, ref in enumerate(add.input):
            bias = by_name.get(ref)  # only a plain reference: output 0, no control edge
            if bias is None or bias.op != "BiasAdd" or readers[bias.name] != 1 or bias.name in dropped:
                continue
            conv = by_name.get(bias.input[0].split(":")[0])
            if conv is None or conv.op != "DepthwiseConv2dNative" or any(i.startswith("^") for i in bias.input):
                continue
            summed = node_def_pb2.NodeDef(name=f"{add.name}/before_bias", op="AddV2", device=add.device)
            summed.input.extend(bias.input[0] if p == port else r for p, r in enumerate(add.input))
            summed.attr["T"].CopyFrom(add.attr["T"])
            add.op = "BiasAdd"
            del add.input[:]
            add.input.extend([summed.name, bias.input[1]])
            add.ClearField("attr")
            add.attr["T"].CopyFrom(summed.attr["T"])
            if "data_format" in bias.attr:
                add.attr["data_format"].CopyFrom(bias.attr["data_format"])
            dropped.add(bias.name)
            added[add.name] = summed
            break
    if not added:
        return 0
    nodes = []
    for n in gd.node:
        if n.name in dropped:
            continue
        if n.name in added:
            nodes.append(added[n.name])
        nodes.append(n)
    del gd.node[:]
    gd.node.extend(nodes)
    return len(added)
