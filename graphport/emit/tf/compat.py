"""Keep emitted graphs importable by old TF: libtensorflow 2.5 is what Essentia and many C API hosts embed.

Two steps: drop attributes equal to their op's default (newer TF adds attrs such as MatMul's `grad_a` that 2.5
does not know), then check every node against 2.5's own op registry (`tf25_ops.pb`, dumped from Essentia's
library by scripts/dump_tf25_oplist.py): the op must exist there, every attr must be known, and type attrs must be
within the allowed types.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import graph_pb2, op_def_pb2
from tensorflow.python.framework import op_def_registry

TF25_OPS = Path(__file__).with_name("tf25_ops.pb")


def strip_default_attrs(graph_def: graph_pb2.GraphDef) -> None:
    """Drop attributes that equal their op's default, so older TF (which may not know them) imports the graph."""
    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            continue
        for attr in op_def.attr:
            if attr.HasField("default_value") and attr.name in node.attr and node.attr[attr.name] == attr.default_value:
                del node.attr[attr.name]


@cache
def tf25_registry() -> dict[str, op_def_pb2.OpDef]:
    ops = op_def_pb2.OpList()
    ops.ParseFromString(TF25_OPS.read_bytes())
    return {op.name: op for op in ops.op}


def legacy_problems(graph_def: graph_pb2.GraphDef) -> list[tuple[str, str, str]]:
    """Why libtensorflow 2.5 would refuse this graph: (TF op, node name, reason) per problem; empty if it imports."""
    registry = tf25_registry()
    problems = []
    for node in graph_def.node:
        op_def = registry.get(node.op)
        if op_def is None:
            problems.append((node.op, node.name, "the op does not exist in TF 2.5"))
            continue
        attrs = {a.name: a for a in op_def.attr}
        for name, value in node.attr.items():
            if name.startswith("_"):
                continue
            if name not in attrs:
                problems.append((node.op, node.name, f"TF 2.5 knows no attr '{name}'"))
            elif (attrs[name].type == "type" and attrs[name].HasField("allowed_values")
                  and value.type not in attrs[name].allowed_values.list.type):
                problems.append((node.op, node.name, f"TF 2.5 does not take {name}={tf.as_dtype(value.type).name}"))
    return problems
