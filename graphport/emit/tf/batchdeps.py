"""Which emitted nodes depend on the runtime batch size, for model.json.

A flat graph reads the batch once (`Shape(input)` then `[0]`) and derives every runtime shape from it. Hosts that
pin the batch, and people debugging a batch-dependent failure, want to know where those values end up: this lists
the Shape reads, the integer shape arithmetic after them, and the data ops that consume such a shape.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

_SHAPE_OPS = {"Shape", "ShapeN", "Size"}


def batch_dependencies(graph_def: graph_pb2.GraphDef) -> dict[str, list]:
    """{"shape_reads": [node], "shape_math": [node], "consumers": [{"node", "op", "input"}]}, names as in the pb."""
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    reads = [op for op in g.get_operations() if op.type in _SHAPE_OPS]
    seen = {op.name for op in reads}
    math: list[str] = []
    consumers: list[dict] = []
    frontier = list(reads)
    while frontier:
        op = frontier.pop()
        for out in op.outputs:
            for user in out.consumers():
                if user.name in seen:
                    continue
                if all(o.dtype.is_integer for o in user.outputs) and user.outputs:
                    seen.add(user.name)
                    math.append(user.name)
                    frontier.append(user)
                else:
                    idx = next(i for i, t in enumerate(user.inputs) if t is out)
                    consumers.append({"node": user.name, "op": user.type, "input": idx})
    consumers = [dict(t) for t in {tuple(sorted(c.items())) for c in consumers}]
    return {"shape_reads": sorted(op.name for op in reads), "shape_math": sorted(math),
            "consumers": sorted(consumers, key=lambda c: (c["node"], c["input"]))}
