"""Static load hazards of a TF graph: what makes old (<=2.12) shape refiners re-infer functions for minutes.

Everything here reads protobufs only. The hazards follow docs/background.md §1: shape functions that ask for constant
inputs (Reshape's shape, Mean's axes, Pad's paddings...) make the old refiner walk back through function bodies;
a walk that reaches a function argument whose value is known outside re-infers the whole body once per argument.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from tensorflow.core.framework import node_def_pb2

from graphport.runtime.tf_model import CALL_OPS, IF_OPS, WHILE_OPS, LoadedModel, called_functions

# op -> indices of inputs whose *value* its shape function requests (EvaluateConstantTensor targets).
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Mean": (1,), "Sum": (1,), "Max": (1,), "Min": (1,), "Prod": (1,), "All": (1,), "Any": (1,),
    "Pad": (1,), "PadV2": (1,), "MirrorPad": (1,), "Split": (0,), "SplitV": (1, 2), "Range": (0, 1, 2),
    "Fill": (0,), "Tile": (1,), "Transpose": (1,), "ExpandDims": (1,), "Slice": (1, 2),
    "StridedSlice": (1, 2, 3), "BroadcastTo": (1,), "SparseToDense": (1,), "OneHot": (1,),
    "ResizeBilinear": (1,), "ResizeNearestNeighbor": (1,), "ArgMax": (1,), "ArgMin": (1,),
    "Conv2DBackpropInput": (0,), "GatherV2": (2,), "ConcatV2": (-1,), "Cumsum": (1,), "Empty": (0,),
}
SHAPE_OF = {"Shape", "ShapeN", "Size"}
CONV_OPS = {"Conv2D", "Conv1D", "Conv3D", "DepthwiseConv2dNative"}
VARIABLE_OPS = {"VarHandleOp", "VariableV2", "Variable", "ReadVariableOp"}


def producer(inp: str) -> str:
    """Node (or function argument) name of an input string ('n:out:0', 'n:0', '^n', 'arg')."""
    return inp.lstrip("^").split(":")[0]


@dataclass
class Body:
    """One graph body (the outer graph or a function) indexed for backward walks."""

    name: str
    nodes: dict[str, node_def_pb2.NodeDef]
    args: list[str]
    depth: int  # 0 = outer graph, 1 = called from it, ...

    def data_inputs(self, node: node_def_pb2.NodeDef) -> list[str]:
        return [producer(i) for i in node.input if not i.startswith("^")]


@dataclass
class Walk:
    """A backward walk from a shape-consuming input: what the old refiner evaluates for that node."""

    body: str
    node: str
    op: str
    chain: str  # e.g. "Range→SplitV→Mean"
    kernels: int  # non-Const nodes the walk would run
    const_args: list[str]  # function arguments known outside (weights): each one a re-inference round
    data_args: list[str]  # arguments fed at run time (the unknown batch): the walk never succeeds


@dataclass
class Analysis:
    """Everything doctor reports, as plain data (report.py renders it, risk.py prices it)."""

    kind: str
    census: Counter
    functions: dict[str, int]  # reachable function -> call depth
    bodies: dict[str, int] = field(default_factory=dict)  # function -> node count
    walks: list[Walk] = field(default_factory=list)
    control_flow: list[tuple[str, str, str]] = field(default_factory=list)  # (body, node, op)
    transposes: int = 0
    cancelling_transposes: int = 0
    convs: int = 0
    convs_after_transpose: int = 0  # convs reading a Transpose (onnx-tf's NCHW->NHWC around every conv)
    grouped_splits: int = 0  # Split feeding >1 convs: a grouped conv split per group
    trivial_splits: int = 0  # Split with num_split=1 in front of a conv (onnx-tf's group=1 path)
    variables: list[str] = field(default_factory=list)
    weight_args: int = 0  # function arguments fed from constants/variables outside
    branches: set[str] = field(default_factory=set)  # functions that are If/While branches or bodies
    dynamic_batch: bool = True
    unknown_shapes: bool = True  # some activation shapes are unknown: a dynamic batch, or a tf.cond's outputs
    cond_hides_shapes: bool = False  # an If/While declares unknown output shapes

    def chains(self) -> Counter:
        """Hazardous chains inside functions by name, with counts: walks that hit weight arguments (each one a
        re-inference round) or constant subgraphs (re-run every round). Walks that end at the runtime input,
        like a Flatten's Shape(x) slice, fail at once and cost nothing, so they are not hazards."""
        return Counter(w.chain for w in self.walks
                       if w.body != "<graph>" and (w.const_args or (w.kernels and not w.data_args)))


def bodies_of(model: LoadedModel) -> list[Body]:
    """The outer graph plus every function reachable from the serving outputs."""
    out = [Body("<graph>", {n.name: n for n in model.graph_def.node}, [], 0)]
    for name, depth in sorted(model.reachable_functions().items(), key=lambda kv: kv[1]):
        f = model.functions[name]
        out.append(Body(name, {n.name: n for n in f.node_def}, [a.name for a in f.signature.input_arg], depth))
    return out


def analyze(model: LoadedModel) -> Analysis:
    """Run every static check on `model`; nothing is executed."""
    bodies = bodies_of(model)
    census: Counter = Counter()
    for b in bodies:
        census.update(n.op for n in b.nodes.values())
    a = Analysis(model.kind, census, model.reachable_functions())
    a.bodies = {b.name: len(b.nodes) for b in bodies if b.depth}
    a.branches = {f for b in bodies for n in b.nodes.values() if n.op in IF_OPS | WHILE_OPS
                  for f in called_functions(n)}
    if model.signature is not None:
        a.dynamic_batch = any(s is None or -1 in s for s in model.signature.input_shapes.values())
    else:
        a.dynamic_batch = any(_placeholder_dynamic(n) for n in model.graph_def.node if n.op == "Placeholder")
    # An If/While with unknown output_shapes (onnx-tf's Pad) hides every shape downstream, even at a fixed batch.
    a.cond_hides_shapes = any(
        any(d.size < 0 for s in n.attr["output_shapes"].list.shape for d in s.dim)
        or any(s.unknown_rank for s in n.attr["output_shapes"].list.shape)
        for b in bodies for n in b.nodes.values() if n.op in IF_OPS | WHILE_OPS)
    a.unknown_shapes = a.dynamic_batch or a.cond_hides_shapes
    const_args = _constant_args(model, bodies)
    a.weight_args = sum(len(v) for v in const_args.values())
    for b in bodies:
        known = const_args.get(b.name, set())
        for node in b.nodes.values():
            if node.op in IF_OPS | WHILE_OPS:
                a.control_flow.append((b.name, node.name, node.op))
            if node.op in VARIABLE_OPS and node.op != "ReadVariableOp":
                a.variables.append(node.attr["shared_name"].s.decode() or node.name)
            if b.depth == 0 and model.kind == "saved_model":
                continue  # the outer graph of a SavedModel only calls the signature function
            for idx in SHAPE_INPUTS.get(node.op, ()):
                inputs = b.data_inputs(node)
                if inputs and -len(inputs) <= idx < len(inputs):
                    a.walks.append(_walk(b, node, inputs[idx], known, a.unknown_shapes, b.name in a.branches))
        _layout(b, a)
    return a


def _placeholder_dynamic(node: node_def_pb2.NodeDef) -> bool:
    shape = node.attr["shape"].shape
    return shape.unknown_rank or any(d.size < 0 for d in shape.dim)


def _walk(b: Body, node: node_def_pb2.NodeDef, start: str, known: set[str], unknown: bool, branch: bool) -> Walk:
    """BFS back from `start` as ExtractConstantSubgraph does; Shape of a tensor of unknown shape is walked into."""
    seen, queue = {start}, deque([start])
    kernels, const_args, data_args = 0, [], []
    while queue:
        name = queue.popleft()
        if name in b.args:
            (const_args if name in known else data_args).append(name)
            continue
        n = b.nodes.get(name)
        if n is None or n.op == "Const":
            continue
        if n.op == "Placeholder":
            data_args.append(name)
            continue
        kernels += 1
        if n.op in SHAPE_OF and not unknown:
            continue  # a fully known shape is materialised without walking further
        for p in b.data_inputs(n):
            if p not in seen:
                seen.add(p)
                queue.append(p)
    chain = _chain(b, node, start) + (" (in tf.cond branch)" if branch else "")
    return Walk(b.name, node.name, node.op, chain, kernels, const_args, data_args)


def _chain(b: Body, node: node_def_pb2.NodeDef, start: str, steps: int = 2) -> str:
    """Name the hazard by its first non-Const producers, e.g. Range→SplitV→Mean."""
    ops = [node.op]
    name = start
    for _ in range(steps):
        n = b.nodes.get(name)
        if n is None or n.op in ("Const", "Identity", "Placeholder"):
            break
        ops.append(n.op)
        nxt = [p for p in b.data_inputs(n) if p in b.nodes and b.nodes[p].op != "Const"]
        if not nxt:
            break
        name = nxt[0]
    return "→".join(reversed(ops))


def _constant_args(model: LoadedModel, bodies: list[Body]) -> dict[str, set[str]]:
    """Per function, the arguments whose value the caller can compute: weights passed as arguments."""
    by_name = {b.name: b for b in bodies}
    known: dict[str, set[str]] = {}
    for b in bodies:  # sorted by depth: callers come before callees
        mine = known.get(b.name, set())
        for node in b.nodes.values():
            for fname in called_functions(node):
                callee = by_name.get(fname)
                if callee is None:
                    continue
                inputs = b.data_inputs(node)
                if node.op in IF_OPS:
                    inputs = inputs[1:]  # the predicate is not passed to the branches
                elif node.op not in CALL_OPS | WHILE_OPS:
                    continue
                args = known.setdefault(fname, set())
                for arg, inp in zip(callee.args, inputs):
                    if _is_constant(b, inp, mine):
                        args.add(arg)
    return known


def _is_constant(b: Body, start: str, known: set[str]) -> bool:
    seen, stack = {start}, [start]
    while stack:
        name = stack.pop()
        if name in b.args:
            if name not in known:
                return False
            continue
        n = b.nodes.get(name)
        if n is None or n.op in ("Placeholder", "PlaceholderWithDefault"):
            return False
        if n.op in VARIABLE_OPS:
            continue  # a variable read: the old C API restores it before import, so it is known
        for p in b.data_inputs(n):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return True


def _layout(b: Body, a: Analysis) -> None:
    """Count Transposes, back-to-back pairs, convs behind Transposes, and convs split per group."""
    consumers: dict[str, list[node_def_pb2.NodeDef]] = {}
    for n in b.nodes.values():
        for p in b.data_inputs(n):
            consumers.setdefault(p, []).append(n)
    for n in b.nodes.values():
        if n.op == "Transpose":
            a.transposes += 1
            src = b.nodes.get(b.data_inputs(n)[0])
            if src is not None and src.op == "Transpose":
                a.cancelling_transposes += 2
        elif n.op in CONV_OPS:
            a.convs += 1
            src = b.nodes.get(b.data_inputs(n)[0])
            if src is not None and src.op == "Transpose":
                a.convs_after_transpose += 1
        elif n.op in ("Split", "SplitV"):
            convs = [c for c in consumers.get(n.name, []) if c.op in CONV_OPS]
            if len(convs) > 1:
                a.grouped_splits += 1
            elif convs and n.attr["num_split"].i == 1:
                a.trivial_splits += 1
