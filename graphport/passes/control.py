"""Control flow: inline every `If` whose condition folds, unroll `Loop`s with a constant trip count.

Exported models branch on scalar inputs (a voice-activity model runs `If` on its sample rate, with LSTMs in the
branches) and on input sizes. A flat graph runs fastest and keeps every shape known, so graphport folds what it
can: `passes.specialise` pins inputs or dims (`--fix-input`, `--fix-dim`), constant folding then decides the
condition, and `fold_if` puts the chosen branch's nodes into the main graph. What stays decides at run time and
becomes TF v1 control flow (`emit/tf/control_flow.py`); `control_flow_notes` names the flag that would fold it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from graphport.ir.attrs import decode_attrs
from graphport.ir.graph import Graph, Node, Value
from graphport.ir.symbolic import Sym

CONTROL_FLOW = ("If", "Loop", "Scan")
MAX_UNROLL = 1024  # trip counts above this would make the flat graph too large to load quickly


def fold_if(graph: Graph) -> tuple[Graph, int]:
    """Inline the chosen branch of every `If` whose condition is a constant; returns (graph, how many)."""
    nodes: list[Node] = []
    folded = 0
    for node in graph.nodes:
        cond = graph.const(node.inputs[0]) if node.op_type == "If" and not node.domain else None
        if cond is None or cond.dtype == object:
            nodes.append(node)
            continue
        taken = bool(np.asarray(cond).ravel()[0])
        nodes.extend(_inline(graph, node, node.attrs["then_branch" if taken else "else_branch"],
                             "then" if taken else "else"))
        folded += 1
    graph.nodes = nodes
    return graph, folded


def _inline(graph: Graph, node: Node, branch: onnx.GraphProto, tag: str) -> list[Node]:
    """The branch's nodes with its own names prefixed, its outputs renamed to the If's outputs."""
    prefix = f"{node.name}/{tag}/"
    produced = {o for n in branch.node for o in n.output if o} | {t.name for t in branch.initializer}
    rename = {name: prefix + name for name in produced}
    for b_out, if_out in zip(branch.output, node.outputs):  # a value made inside the branch takes the If's name
        if b_out.name in produced and b_out.name not in {t.name for t in branch.initializer}:
            rename[b_out.name] = if_out
    out = _body_nodes(graph, branch, prefix, rename)
    for b_out, if_out in zip(branch.output, node.outputs):
        if rename.get(b_out.name) != if_out:  # an outer value or a branch constant passed straight through
            out.append(Node("Identity", f"{prefix}{if_out}/identity", [rename.get(b_out.name, b_out.name)], [if_out]))
    return out


def _body_nodes(graph: Graph, body: onnx.GraphProto, prefix: str, rename: dict[str, str]) -> list[Node]:
    """IR nodes for a subgraph's nodes, names mapped through `rename`; its initializers become constants."""
    for t in body.initializer:
        arr = numpy_helper.to_array(t)
        graph.values[rename[t.name]] = Value(rename[t.name], arr.dtype, arr.shape, arr)
    for vi in body.value_info:
        if vi.name in rename and rename[vi.name] not in graph.values:
            tt = vi.type.tensor_type
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
            graph.values[rename[vi.name]] = Value(rename[vi.name], dtype, None)
    out: list[Node] = []
    for i, n in enumerate(body.node):
        attrs = decode_attrs(n, graph.opset)
        for k, a in attrs.items():
            if isinstance(a, onnx.GraphProto):
                attrs[k] = _renamed(a, rename)
        out.append(Node(n.op_type, prefix + (n.name or f"{n.op_type}_{i}"), [rename.get(x, x) for x in n.input],
                        [rename.get(x, x) for x in n.output], attrs, n.domain if n.domain != "ai.onnx" else ""))
    return out


def unroll_loops(graph: Graph) -> tuple[Graph, int]:
    """Unroll each `Loop` with a constant trip count whose body passes its condition through unchanged
    (as torch's `for` loops export); scan outputs are stacked with Unsqueeze + Concat."""
    nodes: list[Node] = []
    done = 0
    for node in graph.nodes:
        steps = _static_trips(graph, node) if node.op_type == "Loop" and not node.domain else None
        if steps is None:
            nodes.append(node)
            continue
        nodes.extend(_unroll(graph, node, steps))
        done += 1
    graph.nodes = nodes
    return graph, done


def _static_trips(graph: Graph, node: Node) -> int | None:
    body = node.attrs["body"]
    trip = graph.const(node.inputs[0]) if node.inputs and node.inputs[0] else None
    cond = graph.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else np.array(True)
    if trip is None or trip.dtype == object or cond is None or cond.dtype == object or not bool(cond.ravel()[0]):
        return None
    passthrough = {body.input[1].name}
    passthrough |= {n.output[0] for n in body.node if n.op_type == "Identity" and n.input[0] in passthrough}
    steps = int(np.asarray(trip).ravel()[0])
    if body.output[0].name not in passthrough or not 0 < steps <= MAX_UNROLL:
        return None
    return steps


def _unroll(graph: Graph, node: Node, steps: int) -> list[Node]:
    body = node.attrs["body"]
    n_carried = len(body.input) - 2
    carried = list(node.inputs[2:2 + n_carried])
    scans: list[list[str]] = [[] for _ in body.output[1 + n_carried:]]
    produced = {o for n in body.node for o in n.output if o} | {t.name for t in body.initializer}
    true_name = f"{node.name}/cond_true"
    graph.values[true_name] = Value(true_name, np.dtype(bool), (), np.array(True))
    out: list[Node] = []
    for i in range(steps):
        prefix = f"{node.name}/iter{i}/"
        it = prefix + "iter_num"
        graph.values[it] = Value(it, np.dtype(np.int64), (), np.array(i, np.int64))
        rename = {name: prefix + name for name in produced}
        rename.update({body.input[0].name: it, body.input[1].name: true_name})
        rename.update({b.name: c for b, c in zip(body.input[2:], carried)})
        out.extend(_body_nodes(graph, body, prefix, rename))
        carried = [rename.get(o.name, o.name) for o in body.output[1:1 + n_carried]]
        for k, o in enumerate(body.output[1 + n_carried:]):
            scans[k].append(rename.get(o.name, o.name))
    for name, final in zip(node.outputs, carried + [None] * len(scans)):
        if name and final is not None:
            out.append(Node("Identity", f"{node.name}/{name}/identity", [final], [name]))
    axes = f"{node.name}/axes0"
    graph.values[axes] = Value(axes, np.dtype(np.int64), (1,), np.array([0], np.int64))
    for k, (name, parts) in enumerate(zip(node.outputs[n_carried:], scans)):
        if not name:
            continue
        rows = []
        for i, part in enumerate(parts):
            row = f"{node.name}/scan{k}/{i}"
            extra = {"inputs": [part, axes]} if graph.opset >= 13 else {"inputs": [part], "attrs": {"axes": [0]}}
            out.append(Node("Unsqueeze", row, extra["inputs"], [row], extra.get("attrs", {})))
            rows.append(row)
        out.append(Node("Concat", f"{node.name}/scan{k}", rows, [name], {"axis": 0}))
    return out


def _renamed(g: onnx.GraphProto, rename: dict[str, str]) -> onnx.GraphProto:
    """A nested subgraph reading values of the inlined branch by their new names (ONNX forbids shadowing)."""
    copy = onnx.GraphProto()
    copy.CopyFrom(g)
    for n in copy.node:
        for i, x in enumerate(n.input):
            if x in rename:
                n.input[i] = rename[x]
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                a.g.CopyFrom(_renamed(a.g, rename))
    for o in copy.output:
        if o.name in rename and o.name not in {x for n in copy.node for x in n.output}:
            o.name = rename[o.name]
    return copy


def mark_implicit_inputs(graph: Graph) -> None:
    """Record on each `If`/`Loop`/`Scan` left after folding the outer values its subgraphs read, so that dead-code
    elimination and fusion see those uses; the emitter turns such nodes into TF v1 control flow."""
    for node in graph.nodes:
        if node.op_type in CONTROL_FLOW and not node.domain:
            seen: set[str] = set()
            for g in node.attrs.values():
                if isinstance(g, onnx.GraphProto):
                    seen.update(_free_names(g))
            node.implicit_inputs = sorted(n for n in seen if n)


def _free_names(g: onnx.GraphProto) -> set[str]:
    """Names `g` (or a subgraph nested in it) reads without defining them: values of the enclosing scopes."""
    defined = {i.name for i in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
    used = {o.name for o in g.output}
    for n in g.node:
        used.update(n.input)
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                used |= _free_names(sub)
    return used - defined


def control_flow_notes(graph: Graph) -> list[str]:
    """One line per `If`/`Loop`/`Scan` that stays control flow: what it depends on, and the flag that would fold
    it into a flat graph (`--fix-input` for a graph input's value, `--fix-dim` for an input's size)."""
    producers = graph.producers()
    notes = []
    for node in graph.nodes:
        if node.op_type not in CONTROL_FLOW or node.domain:
            continue
        what = "condition" if node.op_type == "If" else "trip count/condition"
        names = node.inputs[:1] if node.op_type == "If" else node.inputs[:2] if node.op_type == "Loop" else []
        values, dims = _input_deps(graph, producers, names)
        data = [v for v in values if _has_runtime_dims(graph, v)]  # a data tensor, not a setting to pin
        values = [v for v in values if v not in data]
        if data:  # pinning other inputs would not fold it
            why = f"its {what} is computed from the data in graph input '{data[0]}'"
        elif values:
            hint = ", ".join(f"'{d}'" for d in values)
            why = (f"its {what} depends on the value of graph input {hint}; --fix-input {values[0]}=VALUE "
                   f"would fold it into a flat graph")
        elif dims:
            hint = ", ".join(f"'{d}'" for d in dims)
            why = (f"its {what} depends on the size of dim {hint} of the inputs; --fix-dim {dims[0]}=SIZE would "
                   f"fold it into a flat graph (other dims stay dynamic)")
        else:
            why = "its sequence length is known only at run time" if node.op_type == "Scan" else \
                f"its {what} is computed at run time"
        notes.append(f"{node.op_type} '{node.name}' runs as TF v1 control flow: {why}")
    return notes


def _has_runtime_dims(graph: Graph, name: str) -> bool:
    shape = graph.values[name].shape
    return shape is None or any(not isinstance(d, int) for d in shape)


def _input_deps(graph: Graph, producers: dict[str, Node], names: list[str]) -> tuple[list[str], list[str]]:
    """(graph inputs whose values reach `names`, symbolic input dims that reach them only through Shape/Size).
    A dim that leads an input (the batch) is named only when no other dim is."""
    seen, values, stack = set(), set(), [(n, False) for n in names if n]
    shaped: set[str] = set()  # inputs whose shape reaches `names`
    exact: set[str] = set()  # dims seen in shapes folded already
    while stack:
        name, via_shape = stack.pop()
        if (name, via_shape) in seen:
            continue
        seen.add((name, via_shape))
        if name in graph.inputs:
            (shaped if via_shape else values).add(name)
        elif graph.const(name) is not None:  # a folded shape: `Shape(x)[1]` is the symbol `sequence`
            exact.update(s for s in _symbols_in(graph.const(name)) if s in graph.symbols)
        elif name in producers:
            node = producers[name]
            sized = via_shape or node.op_type in ("Shape", "Size")
            stack.extend((i, sized) for i in node.all_inputs() if i)
    dims = [s for s, (src, _) in graph.symbols.items() if src in shaped or s in exact]
    leading = {s for s, (_, axis) in graph.symbols.items() if axis == 0}
    return sorted(values), [d for d in dims if d not in leading] or dims


def _symbols_in(arr: np.ndarray) -> set[str]:
    """Input dim names inside a folded shape value (object arrays of `Sym`), derived atoms followed to their roots."""
    found: set[str] = set()
    stack = [v for v in arr.ravel() if isinstance(v, Sym)] if arr.dtype == object else []
    while stack:
        for mono in stack.pop().terms:
            for atom in mono:
                if atom.source is not None:
                    found.add(atom.name)
                elif atom.arg is not None:
                    stack.append(atom.arg)
    return found
