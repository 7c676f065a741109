"""Control flow: inline every `If` whose condition folds, unroll `Loop`s with a constant trip count.

Exported models branch on scalar inputs (a voice-activity model runs `If` on its sample rate, with LSTMs in the
branches) and on input sizes. A flat graph runs fastest and keeps every shape known, so graphport folds what it
can: `passes.specialise` pins inputs or dims (`--fix-input`, `--fix-dim`), constant folding then decides the
condition, and `fold_if` puts the chosen branch's nodes into the main graph. What stays decides at run time and
becomes TF v1 control flow (`emit/tf/control_flow.py`); `control_flow_notes` names the flag that would fold it.
"""

from __future__ import annotations

import numpy as np

from graphport.ir.graph import Graph, Node, PassResult, Value
from graphport.ir.symbolic import Sym
from graphport.passes.fold import fold_constants

CONTROL_FLOW = ("If", "Loop", "Scan")
MAX_UNROLL = 1024  # trip counts above this would make the flat graph too large to load quickly


def fold_with_control_flow(graph: Graph) -> PassResult:
    """Fold constants and shapes, inlining each `If` whose condition folds and unrolling each `Loop` whose trip
    count does, until nothing changes: an inlined branch may decide a nested If or a Loop's trip count."""
    modified = fold_constants(graph).modified
    changed = True
    while changed:
        changed = fold_if(graph).modified
        changed = unroll_loops(graph).modified or changed
        if changed:
            fold_constants(graph)
            modified = True
    return PassResult(graph, modified)


def fold_if(graph: Graph) -> PassResult:
    """Inline the chosen branch of every `If` whose condition is a constant."""
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
    return PassResult(graph, folded > 0)


def _inline(graph: Graph, node: Node, branch: Graph, tag: str) -> list[Node]:
    """The branch's nodes with its own names prefixed, its outputs renamed to the If's outputs."""
    prefix = f"{node.name}/{tag}/"
    consts = _constants(branch)
    produced = {o for n in branch.nodes for o in n.outputs if o} | consts
    rename = {name: prefix + name for name in produced}
    for b_out, if_out in zip(branch.outputs, node.outputs):  # a value made inside the branch takes the If's name
        if b_out in produced and b_out not in consts:
            rename[b_out] = if_out
    out = _body_nodes(graph, branch, prefix, rename)
    for b_out, if_out in zip(branch.outputs, node.outputs):
        if rename.get(b_out) != if_out:  # an outer value or a branch constant passed straight through
            out.append(Node("Identity", f"{prefix}{if_out}/identity", [rename.get(b_out, b_out)], [if_out]))
    return out


def _constants(body: Graph) -> set[str]:
    """A lifted body's initializers: its values that hold a constant."""
    return {name for name, v in body.values.items() if v.const is not None}


def _body_nodes(graph: Graph, body: Graph, prefix: str, rename: dict[str, str]) -> list[Node]:
    """Copies of a body's nodes for the enclosing graph, names mapped through `rename`; its constants, and the
    element types of the intermediates it declares, become values of the enclosing graph."""
    declared = set(body.inputs) | set(body.outputs)
    for name, v in body.values.items():
        if v.const is not None:
            graph.values[rename[name]] = Value(rename[name], v.const.dtype, v.const.shape, v.const)
        elif name in rename and name not in declared and rename[name] not in graph.values:
            graph.values[rename[name]] = Value(rename[name], v.dtype, None)
    return [Node(n.op_type, prefix + n.name, [rename.get(x, x) for x in n.inputs], [rename.get(x, x) for x in n.outputs],
                 _renamed_attrs(n.attrs, rename), n.domain) for n in body.nodes]


def _renamed_attrs(attrs: dict, rename: dict[str, str]) -> dict:
    """A node's attributes for a copy of it: lists copied (passes edit attrs per node), nested bodies reading
    the copy's values by their new names."""
    out = {}
    for k, a in attrs.items():
        if isinstance(a, Graph):
            a = _renamed(a, rename)
        elif isinstance(a, list) and a and isinstance(a[0], Graph):
            a = [_renamed(g, rename) for g in a]
        elif isinstance(a, list):
            a = list(a)
        out[k] = a
    return out


def unroll_loops(graph: Graph) -> PassResult:
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
    return PassResult(graph, done > 0)


def _static_trips(graph: Graph, node: Node) -> int | None:
    body = node.attrs["body"]
    trip = graph.const(node.inputs[0]) if node.inputs and node.inputs[0] else None
    cond = graph.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else np.array(True)
    if trip is None or trip.dtype == object or cond is None or cond.dtype == object or not bool(cond.ravel()[0]):
        return None
    passthrough = {body.inputs[1]}
    passthrough |= {n.outputs[0] for n in body.nodes if n.op_type == "Identity" and n.inputs[0] in passthrough}
    steps = int(np.asarray(trip).ravel()[0])
    if body.outputs[0] not in passthrough or not 0 < steps <= MAX_UNROLL:
        return None
    return steps


def _unroll(graph: Graph, node: Node, steps: int) -> list[Node]:
    body = node.attrs["body"]
    n_carried = len(body.inputs) - 2
    carried = list(node.inputs[2:2 + n_carried])
    scans: list[list[str]] = [[] for _ in body.outputs[1 + n_carried:]]
    produced = {o for n in body.nodes for o in n.outputs if o} | _constants(body)
    true_name = f"{node.name}/cond_true"
    graph.values[true_name] = Value(true_name, np.dtype(bool), (), np.array(True))
    out: list[Node] = []
    for i in range(steps):
        prefix = f"{node.name}/iter{i}/"
        it = prefix + "iter_num"
        graph.values[it] = Value(it, np.dtype(np.int64), (), np.array(i, np.int64))
        rename = {name: prefix + name for name in produced}
        rename.update({body.inputs[0]: it, body.inputs[1]: true_name})
        rename.update(dict(zip(body.inputs[2:], carried)))
        out.extend(_body_nodes(graph, body, prefix, rename))
        carried = [rename.get(o, o) for o in body.outputs[1:1 + n_carried]]
        for k, o in enumerate(body.outputs[1 + n_carried:]):
            scans[k].append(rename.get(o, o))
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


def _renamed(g: Graph, rename: dict[str, str]) -> Graph:
    """A nested body reading values of the inlined branch by their new names (ONNX forbids shadowing)."""
    produced = {o for n in g.nodes for o in n.outputs}
    values = dict(g.values)
    outputs = []
    for o in g.outputs:
        if o in rename and o not in produced:  # an outer value passed straight through
            old = values.pop(o, None) or Value(o)
            values[rename[o]] = Value(rename[o], old.dtype, old.shape, old.const)
            o = rename[o]
        outputs.append(o)
    nodes = [Node(n.op_type, n.name, [rename.get(x, x) for x in n.inputs], list(n.outputs),
                  _renamed_attrs(n.attrs, rename), n.domain, list(n.implicit_inputs)) for n in g.nodes]
    return Graph(nodes, values, list(g.inputs), outputs, g.opset, g.symbols, g.domain_opsets)


def mark_implicit_inputs(graph: Graph) -> PassResult:
    """Record on each `If`/`Loop`/`Scan` left after folding the outer values its subgraphs read, so that dead-code
    elimination and fusion see those uses; the emitter turns such nodes into TF v1 control flow."""
    for node in graph.nodes:
        if node.op_type in CONTROL_FLOW and not node.domain:
            seen: set[str] = set()
            for body in node.bodies():
                seen.update(_free_names(body))
            node.implicit_inputs = sorted(n for n in seen if n)
    return PassResult(graph, False)  # records uses; the graph computes the same


def _free_names(g: Graph) -> set[str]:
    """Names `g` (or a subgraph nested in it) reads without defining them: values of the enclosing scopes."""
    defined = set(g.inputs) | _constants(g) | {o for n in g.nodes for o in n.outputs}
    used = set(g.outputs)
    for n in g.nodes:
        used.update(n.inputs)
        for body in n.bodies():
            used |= _free_names(body)
    return used - defined


def note_control_flow(graph: Graph) -> PassResult:
    """Put `control_flow_notes` into the graph's notes (the warnings `convert` prints)."""
    graph.notes = control_flow_notes(graph)
    return PassResult(graph, False)


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
