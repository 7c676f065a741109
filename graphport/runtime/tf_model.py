"""Read a SavedModel directory or a `.pb` into GraphDef + function library, without executing anything.

Only protobufs are parsed here: no TF runtime, no variables restored, no op kernels run. That is what lets
doctor list dangerous ops (file access, Python calls) before the model is ever loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError
from tensorflow.core.framework import function_pb2, graph_pb2, node_def_pb2
from tensorflow.core.protobuf import saved_model_pb2

from graphport.core.errors import DoctorError

CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall"}
IF_OPS = {"If", "StatelessIf"}
WHILE_OPS = {"While", "StatelessWhile"}
# Ops that read or write files or run arbitrary code: listed before anything is executed (needs --trust).
UNTRUSTED_OPS = {"ReadFile", "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "MatchingFiles",
                 "ImmutableConst", "Save", "SaveSlices", "SaveV2", "Restore", "RestoreSlice", "RestoreV2",
                 "MergeV2Checkpoints", "ShardedFilename", "DeleteFile", "TFRecordReader", "TFRecordReaderV2",
                 "FixedLengthRecordReaderV2", "TextLineReaderV2", "WholeFileReaderV2", "LoadAndRemapMatrix"}
# Ops whose state cannot become a Const: freezing them changes what the model does.
UNFREEZABLE_OPS = {"HashTableV2": "a hash table is filled at run time by an initializer",
                   "MutableHashTableV2": "a mutable hash table changes while the model runs",
                   "MutableDenseHashTable": "a mutable hash table changes while the model runs",
                   "LookupTableImportV2": "it fills a lookup table at run time",
                   "LookupTableFindV2": "it reads a lookup table (a resource filled at run time), not a tensor",
                   "LookupTableSizeV2": "it reads a lookup table (a resource filled at run time), not a tensor",
                   "InitializeTableFromTextFileV2": "it reads a vocabulary file at run time",
                   "AssignVariableOp": "it writes a variable, so the variable is state, not a constant",
                   "AssignAddVariableOp": "it updates a variable, so the variable is state, not a constant",
                   "AssignSubVariableOp": "it updates a variable, so the variable is state, not a constant",
                   "QueueDequeueV2": "a queue is run-time state", "IteratorGetNext": "a dataset iterator is "
                   "run-time input"}


@dataclass
class Signature:
    """A serving signature: input key -> C API tensor, output key -> C API tensor."""

    name: str
    inputs: dict[str, str]
    outputs: dict[str, str]
    input_shapes: dict[str, list[int] | None] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A model's graph as protobufs: outer graph, functions by name, and (for SavedModels) the chosen signature."""

    path: Path
    kind: str  # "saved_model" or "graph_def"
    graph_def: graph_pb2.GraphDef
    functions: dict[str, function_pb2.FunctionDef]
    tag: str | None = None
    signature: Signature | None = None
    tags_available: list[list[str]] = field(default_factory=list)

    def reachable_functions(self) -> dict[str, int]:
        """Functions reachable from the serving outputs (or the whole outer graph), with their call depth."""
        roots = _outer_nodes_for(self)
        depth: dict[str, int] = {}
        stack = [(f, 1) for n in roots for f in called_functions(n)]
        while stack:
            name, d = stack.pop()
            if name not in self.functions or depth.get(name, 0) >= d:
                continue
            depth[name] = d
            stack.extend((f, d + 1) for n in self.functions[name].node_def for f in called_functions(n))
        return depth


def called_functions(node: node_def_pb2.NodeDef) -> list[str]:
    """Names of the functions a node calls (call ops, If/While branches and bodies)."""
    names = []
    for key in ("f", "then_branch", "else_branch", "cond", "body"):
        if key in node.attr and node.attr[key].func.name:
            names.append(node.attr[key].func.name)
    return names


def _outer_nodes_for(model: LoadedModel) -> list[node_def_pb2.NodeDef]:
    """Outer nodes the serving signature needs; all outer nodes for a `.pb` or when no signature applies."""
    nodes = {n.name: n for n in model.graph_def.node}
    if model.signature is None:
        return list(nodes.values())
    seen: set[str] = set()
    stack = [t.split(":")[0] for t in model.signature.outputs.values()]
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        stack.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
    return [nodes[n] for n in seen]


def load(path: str | Path, tag: str | None = None, signature: str | None = None) -> LoadedModel:
    """Parse `path` (SavedModel dir, saved_model.pb, or frozen GraphDef .pb); raise DoctorError on bad input."""
    path = Path(path)
    if not path.exists():
        raise DoctorError(f"'{path}' does not exist.")
    if path.is_dir():
        pb = path / "saved_model.pb"
        if not pb.exists():
            found = "saved_model.pbtxt" if (path / "saved_model.pbtxt").exists() else "no saved_model.pb"
            raise DoctorError(f"'{path}' is a directory but not a binary SavedModel ({found}).")
        return _load_saved_model(path, pb.read_bytes(), tag, signature)
    data = path.read_bytes()
    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(data)
        if sm.meta_graphs and sm.meta_graphs[0].graph_def.node:
            return _load_saved_model(path.parent, data, tag, signature)
    except DecodeError:
        pass
    gd = graph_pb2.GraphDef()
    try:
        gd.ParseFromString(data)
    except DecodeError as e:
        raise DoctorError(f"'{path}' is not a TensorFlow model: it parses neither as a SavedModel nor as a "
                          f"GraphDef ({e}).") from None
    if not gd.node or any(not n.op for n in gd.node):
        raise DoctorError(f"'{path}' is not a TensorFlow model: no graph nodes could be read from it.")
    return LoadedModel(path, "graph_def", gd, {f.signature.name: f for f in gd.library.function})


def _load_saved_model(path: Path, data: bytes, tag: str | None, signature: str | None) -> LoadedModel:
    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(data)
    except DecodeError as e:
        raise DoctorError(f"'{path}/saved_model.pb' is corrupt: {e}.") from None
    tags = [list(mg.meta_info_def.tags) for mg in sm.meta_graphs]
    if not tags:
        raise DoctorError(f"'{path}' holds no meta graph.")
    if tag is None and len(tags) > 1:
        listing = ", ".join("+".join(t) or "(no tags)" for t in tags)
        raise DoctorError(f"'{path}' holds {len(tags)} meta graphs (tags: {listing}); pick one with --tag.")
    wanted = set(tag.split(",")) if tag else None
    chosen = [mg for mg in sm.meta_graphs if wanted is None or wanted == set(mg.meta_info_def.tags)]
    if not chosen:
        raise DoctorError(f"no meta graph with tags '{tag}' in '{path}'; available: {tags}.")
    mg = chosen[0]
    sigs = {k: v for k, v in mg.signature_def.items() if not k.startswith("__")}
    if signature is None:
        if "serving_default" in sigs or not sigs:
            signature = "serving_default" if sigs else None
        elif len(sigs) == 1:
            signature = next(iter(sigs))
        else:
            raise DoctorError(f"'{path}' has signatures {sorted(sigs)} and no serving_default; pick --signature.")
    elif signature not in sigs:
        raise DoctorError(f"no signature '{signature}' in '{path}'; available: {sorted(sigs)}.")
    sig = None
    if signature is not None:
        s = sigs[signature]
        shapes = {k: (None if v.tensor_shape.unknown_rank else [d.size for d in v.tensor_shape.dim])
                  for k, v in s.inputs.items()}
        sig = Signature(signature, {k: v.name for k, v in s.inputs.items()},
                        {k: v.name for k, v in s.outputs.items()}, shapes)
    gd = mg.graph_def
    return LoadedModel(path, "saved_model", gd, {f.signature.name: f for f in gd.library.function},
                       tag=",".join(mg.meta_info_def.tags), signature=sig, tags_available=tags)


def untrusted_ops(model: LoadedModel) -> list[tuple[str, str]]:
    """(op, node) for every op reachable from the serving outputs that touches files or runs code."""
    bodies = [n for n in model.graph_def.node if model.signature is None]
    bodies += [n for f in model.reachable_functions() for n in model.functions[f].node_def]
    if model.signature is not None:
        bodies += _outer_nodes_for(model)
    return [(n.op, n.name) for n in bodies if n.op in UNTRUSTED_OPS]
