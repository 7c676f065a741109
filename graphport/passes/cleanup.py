"""Dead-code elimination: drop every node no graph output depends on."""

from __future__ import annotations

from graphport.ir.graph import Graph, PassResult


def eliminate_dead_code(graph: Graph) -> PassResult:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.all_inputs() if i)
    modified = len(kept) != len(graph.nodes)
    graph.nodes = kept[::-1]
    for name in list(graph.values):
        if name not in live and name not in graph.inputs:
            del graph.values[name]
    return PassResult(graph, modified)
