"""Fold the bodies of the control flow that stays (an `If`, `Loop` or `Scan` deciding at run time), so that code
generation only emits: it never runs a pass.

Each body becomes a graph over the enclosing graph's values (so that its constants and shapes resolve), its node
names prefixed with the owner's name and "then", "else" or "body", folded like the main graph, and a nested
`If` or `Loop` that folds there is inlined as in the main graph. A loop-state input gets the shape it keeps over
all iterations: its initial value's known dims where the body's declared input and output agree on them, unknown
elsewhere (a state that grows, or one ONNX could not infer); folding must not read a dim that changes between
iterations. Runs last, on the graph that is emitted.
"""

from __future__ import annotations

from graphport.ir.graph import Dim, Graph, Node, PassResult, Value, agreed_dims
from graphport.passes.control import CONTROL_FLOW, fold_with_control_flow


def fold_bodies(graph: Graph) -> PassResult:
    modified = False
    for node in graph.nodes:
        if node.op_type not in CONTROL_FLOW or node.domain:
            continue
        if node.op_type == "If":
            for key, tag in (("then_branch", "then"), ("else_branch", "else")):
                node.attrs[key] = _folded_body(graph, node, node.attrs[key], tag)
            modified = True
            continue
        body = node.attrs["body"]
        if node.op_type == "Loop":
            n_state = len(body.inputs) - 2
            state = zip(node.inputs[2:2 + n_state], body.inputs[2:], body.outputs[1:1 + n_state])
        else:
            n_state = len(body.inputs) - node.attrs["num_scan_inputs"]
            state = zip(node.inputs[:n_state], body.inputs[:n_state], body.outputs[:n_state])
        shapes = {b_in: _invariant(graph.values.get(init), [body.values.get(b_in), body.values.get(b_out)])
                  for init, b_in, b_out in state}
        node.attrs["body"] = _folded_body(graph, node, body, "body", shapes)
        modified = True
    return PassResult(graph, modified)


def _invariant(init: Value | None, declared: list[Value | None]) -> tuple[Dim, ...] | None:
    """The loop state's shape over all iterations (None: unknown rank)."""
    if init is None or init.shape is None:
        return None
    known: list[Dim] = [d if isinstance(d, int) else None for d in init.shape]
    return tuple(agreed_dims(known, [None if v is None else v.shape for v in declared]))


def _folded_body(outer: Graph, owner: Node, body: Graph, tag: str,
                 shapes: dict[str, tuple[Dim, ...] | None] | None = None) -> Graph:
    values = dict(outer.values)  # body names never shadow outer ones (ONNX forbids it), so sharing is safe
    for name, v in body.values.items():
        values[name] = Value(name, v.dtype, (shapes or {}).get(name, v.shape), v.const)
    nodes = [Node(n.op_type, f"{owner.name}/{tag}/{n.name}", list(n.inputs), list(n.outputs), dict(n.attrs),
                  n.domain) for n in body.nodes]
    sub = Graph(nodes, values, list(body.inputs), list(body.outputs), outer.opset, outer.symbols, outer.domain_opsets)
    return fold_bodies(fold_with_control_flow(sub).graph).graph  # a nested If or Loop that folds is inlined
