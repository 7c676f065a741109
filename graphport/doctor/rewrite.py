"""GraphDef rewrites for what TF's own tools leave behind: folding, dead tf.cond branches, DCE, I/O names.

Grappler's constfold refuses some all-constant nodes (SparseToDense fed by an empty `Where`, as onnx-tf emits),
and it keeps lowered `tf.cond`s (Switch/Merge) even when the predicate is a Const. These passes finish the job,
so that the flat graph carries no shape arithmetic that does not need the runtime batch.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.python.framework import op_def_registry

from graphport.doctor.analyze import producer

NEVER_FOLD = {"Placeholder", "PlaceholderWithDefault", "Switch", "Merge", "Enter", "Exit", "NextIteration",
              "LoopCond", "NoOp", "Const"}


def _port(inp: str) -> tuple[str, int]:
    name, _, idx = inp.partition(":")
    return name, int(idx or 0)


def _tensor(name: str, port: int) -> str:
    return name if port == 0 else f"{name}:{port}"


def _stateful(op: str) -> bool:
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def fold_constants(gd: graph_pb2.GraphDef) -> tuple[graph_pb2.GraphDef, int]:
    """Evaluate every non-Const node computed from Consts only and replace its used outputs by Consts."""
    nodes = {n.name: n for n in gd.node}
    memo = _foldable(gd)
    wanted: dict[str, set[int]] = {}  # frontier node -> output ports used by non-foldable consumers
    for n in gd.node:
        if memo.get(n.name, False):
            continue
        for inp in n.input:
            if inp.startswith("^"):
                continue
            src, port = _port(inp)
            if memo.get(src, False) and nodes[src].op != "Const":
                wanted.setdefault(src, set()).add(port)
    if not wanted:
        return gd, 0
    fetches = [(name, port) for name, ports in wanted.items() for port in sorted(ports)]
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run([f"{name}:{port}" for name, port in fetches])
    renamed: dict[str, str] = {}
    out = graph_pb2.GraphDef()
    out.CopyFrom(gd)
    index = {n.name: i for i, n in enumerate(out.node)}
    for (name, port), value in zip(fetches, values):
        const_name = name if wanted[name] == {0} else f"{name}/folded_{port}"
        renamed[_tensor(name, port)] = const_name
        c = node_def_pb2.NodeDef(name=const_name, op="Const", device=nodes[name].device)
        c.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
        c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        if const_name == name:
            out.node[index[name]].CopyFrom(c)
        else:
            out.node.append(c)
    for n in out.node:
        for i, inp in enumerate(n.input):
            if not inp.startswith("^"):
                n.input[i] = renamed.get(_tensor(*_port(inp)), inp)
    return out, len(fetches)


def _foldable(gd: graph_pb2.GraphDef) -> dict[str, bool]:
    """Node -> computed from Consts only; iterative (Kahn order), so deep graphs do not hit the recursion limit."""
    nodes = {n.name: n for n in gd.node}
    preds = {n.name: [producer(i) for i in n.input if producer(i) in nodes] for n in gd.node}
    users: dict[str, list[str]] = {}
    for name, ps in preds.items():
        for p in ps:
            users.setdefault(p, []).append(name)
    waiting = {name: len(ps) for name, ps in preds.items()}
    ready = [name for name, k in waiting.items() if k == 0]
    memo: dict[str, bool] = {}
    while ready:
        name = ready.pop()
        n = nodes[name]
        memo[name] = n.op == "Const" or (n.op not in NEVER_FOLD and not _stateful(n.op) and bool(n.input)
                                         and all(memo.get(p, False) for p in preds[name]))
        for u in users.get(name, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    return memo  # nodes on cycles (loops) never become ready: never folded


def prune_dead_branches(gd: graph_pb2.GraphDef) -> tuple[graph_pb2.GraphDef, int]:
    """Resolve lowered tf.conds whose predicate is a Const: keep the taken branch, drop the other."""
    nodes = {n.name: n for n in gd.node}
    dead: set[str] = set()
    rewire: dict[str, str] = {}
    resolved: set[str] = set()
    for n in gd.node:
        if n.op != "Switch":
            continue
        pred = nodes.get(producer(n.input[1]))
        if pred is None or pred.op != "Const":
            continue
        taken = int(bool(tf.make_ndarray(pred.attr["value"].tensor)))
        rewire[_tensor(n.name, taken)] = n.input[0]
        dead.add(f"{n.name}:{1 - taken}")
        resolved.add(n.name)
    if not resolved:
        return gd, 0
    out = graph_pb2.GraphDef()
    out.CopyFrom(gd)
    dead_nodes: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in out.node:
            if n.name in dead_nodes:
                continue
            ins = list(n.input)
            is_dead = [_dead(i, dead, dead_nodes) for i in ins]
            if n.op == "Merge":
                live = [i for i, d in zip(ins, is_dead) if not d]
                if not live:
                    dead_nodes.add(n.name)
                    changed = True
                elif len(live) < len(ins):
                    del n.input[:]
                    n.input.extend(live)
                    n.op = "Identity"
                    del n.attr["N"]
                    changed = True
            elif any(is_dead):
                dead_nodes.add(n.name)
                changed = True
    for n in out.node:
        for i, inp in enumerate(n.input):
            key = inp.lstrip("^")
            key = key.removesuffix(":0")
            if key in rewire:
                n.input[i] = ("^" + producer(rewire[key])) if inp.startswith("^") else rewire[key]
    keep = [n for n in out.node if n.name not in dead_nodes]
    del out.node[:]
    out.node.extend(keep)
    for n in out.node:  # control edges to resolved Switches carry no ordering any more
        kept = [i for i in n.input if not (i.startswith("^") and (i[1:] in dead_nodes or i[1:] in resolved))]
        del n.input[:]
        n.input.extend(kept)
    return out, len(resolved)


def _dead(inp: str, dead_ports: set[str], dead_nodes: set[str]) -> bool:
    name, port = _port(inp.lstrip("^"))
    return name in dead_nodes or (not inp.startswith("^") and f"{name}:{port}" in dead_ports)


def prune(gd: graph_pb2.GraphDef, keep: list[str]) -> graph_pb2.GraphDef:
    """Drop every node that none of `keep` needs (data or control)."""
    nodes = {n.name: n for n in gd.node}
    seen: set[str] = set()
    stack = [k for k in keep if k in nodes]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(producer(i) for i in nodes[name].input)
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(gd.versions)
    out.library.CopyFrom(gd.library)
    out.node.extend(n for n in gd.node if n.name in seen)
    return out


def set_io_names(gd: graph_pb2.GraphDef, inputs: dict[str, str], outputs: dict[str, str]) -> graph_pb2.GraphDef:
    """Name the Placeholders after the signature's input keys and add an Identity per output key."""
    out = graph_pb2.GraphDef()
    out.CopyFrom(gd)
    taken = {n.name for n in out.node}
    wanted = set(inputs) | set(outputs)
    mapping = {}
    for n in out.node:  # move any node squatting on a wanted name out of the way
        if n.name in wanted and inputs.get(n.name) != f"{n.name}:0":
            new = f"{n.name}_orig"
            while new in taken:
                new += "_"
            mapping[n.name] = new
            taken.add(new)
    for key, tensor in inputs.items():
        if producer(tensor) != key:
            mapping[producer(tensor)] = key
    for n in out.node:
        n.name = mapping.get(n.name, n.name)
        for i, inp in enumerate(n.input):
            ctrl, body = ("^", inp[1:]) if inp.startswith("^") else ("", inp)
            name, _, port = body.partition(":")
            if name in mapping:
                n.input[i] = ctrl + mapping[name] + (f":{port}" if port else "")
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(out, name="")
    for key, tensor in outputs.items():
        name, port = _port(tensor)
        src = _tensor(mapping.get(name, name), port)
        ident = out.node.add(name=key, op="Identity", input=[src])
        ident.attr["T"].type = graph.get_tensor_by_name(f"{producer(src)}:{port}").dtype.as_datatype_enum
    return out
