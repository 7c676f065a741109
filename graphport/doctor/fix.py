"""`doctor --fix`: freeze, inline, fold and flatten a slow-loading model; verify it; write it atomically.

TF's own tools do most of it (`convert_variables_to_constants_v2` inlines functions, turns variables into Consts
and lowers tf.cond to Switch/Merge; Grappler folds constants, cancels adjacent Transposes, drops Identities);
rewrite.py and layout.py finish what they leave. The result is refused unless it matches the original at every batch size.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.grappler import tf_optimizer

from graphport.core import model_json
from graphport.core.atomic import output_lock, replace_dir, staging_dir
from graphport.core.errors import DoctorError, OutputExists, VerificationFailed
from graphport.doctor.layout import sink_transposes
from graphport.doctor.rewrite import fold_constants, prune, prune_dead_branches, set_io_names
from graphport.doctor.saved import save_flat_saved_model
from graphport.runtime.tf_model import IF_OPS, UNFREEZABLE_OPS, WHILE_OPS, LoadedModel
from graphport.runtime.tf_saved_model import py_identifier

GRAPPLER_PASSES = ["function", "constfold", "arithmetic", "dependency", "constfold", "arithmetic", "dependency"]
CONTROL_FLOW_OPS = IF_OPS | WHILE_OPS | {"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond"}
CALLS = {"PartitionedCall", "StatefulPartitionedCall"}


@dataclass
class FixResult:
    """What --fix did: the flat graph, its census before/after, verification errors, timings."""

    graph_def: graph_pb2.GraphDef
    inputs: dict[str, list[int | None]]
    outputs: list[str]
    before: Counter
    after: Counter
    max_abs: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    out_dir: Path | None = None


def check_freezable(model: LoadedModel) -> None:
    """Refuse models whose state cannot become Consts, naming the op and why (before anything runs)."""
    bodies = [model.graph_def.node] + [model.functions[f].node_def for f in model.reachable_functions()]
    for nodes in bodies:
        for n in nodes:
            if n.op in UNFREEZABLE_OPS:
                raise DoctorError(f"cannot freeze op '{n.name}' ({n.op}): {UNFREEZABLE_OPS[n.op]}. The input was "
                                  f"left untouched.")


def _concrete_function(model: LoadedModel):
    """The function to freeze: the chosen SavedModel signature, or the `.pb` wrapped from Placeholders to sinks."""
    if model.kind == "saved_model":
        loaded = tf.saved_model.load(str(model.path), tags=model.tag.split(",") if model.tag else None)
        return loaded.signatures[model.signature.name], loaded
    gd = model.graph_def
    consumed = {i.lstrip("^").split(":")[0] for n in gd.node for i in n.input}
    ins = [n.name for n in gd.node if n.op == "Placeholder"]
    outs = [n.name for n in gd.node if n.name not in consumed and n.op not in ("NoOp", "Placeholder", "Const")]
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
    fn = wrapped.prune([wrapped.graph.get_tensor_by_name(f"{n}:0") for n in ins],
                       {n: wrapped.graph.get_tensor_by_name(f"{n}:0") for n in outs})
    return fn, wrapped


def _grappler(gd: graph_pb2.GraphDef, fetches: list[str]) -> graph_pb2.GraphDef:
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    meta = tf.compat.v1.train.export_meta_graph(graph_def=gd, graph=graph)
    collection = meta_graph_pb2.CollectionDef()
    collection.node_list.value.extend(fetches)
    meta.collection_def["train_op"].CopyFrom(collection)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers[:] = GRAPPLER_PASSES
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    rewrite.min_graph_nodes = -1
    return tf_optimizer.OptimizeGraph(config, meta)


def flatten(model: LoadedModel) -> FixResult:
    """Freeze and flatten `model`'s serving function; raise DoctorError if anything but a flat graph remains."""
    check_freezable(model)
    start = time.perf_counter()
    fn, _keep_alive = _concrete_function(model)
    frozen = convert_variables_to_constants_v2(fn, lower_control_flow=True)
    gd = frozen.graph.as_graph_def()
    in_keys = [t.name.split(":")[0] for t in frozen.inputs]
    out_struct = fn.structured_outputs
    out_keys = list(out_struct) if isinstance(out_struct, dict) else [f"output_{i}" for i in range(len(frozen.outputs))]
    outputs = dict(zip(out_keys, [t.name for t in frozen.outputs]))
    keep = in_keys + [t.split(":")[0] for t in outputs.values()]
    for _ in range(4):  # each round can expose more: a folded predicate resolves a Switch, which frees more folds
        gd = _grappler(gd, list(outputs.values()))
        gd, folded = fold_constants(gd)
        gd, switches = prune_dead_branches(gd)
        gd = prune(gd, keep)
        if not folded and not switches:
            break
    sunk, _ = sink_transposes(gd)
    sunk = prune(_grappler(sunk, list(outputs.values())), keep)
    if _count(sunk, "Transpose") < _count(gd, "Transpose"):
        gd = sunk
    gd = set_io_names(gd, {k: f"{k}:0" for k in in_keys}, outputs)
    gd = prune(gd, in_keys + out_keys)
    del gd.library.function[:]
    left = sorted({n.op for n in gd.node} & (CONTROL_FLOW_OPS | CALLS))
    if left:
        raise DoctorError(f"--fix could not flatten the graph: {', '.join(left)} remain; nothing was written.")
    shapes = {t.name.split(":")[0]: t.shape.as_list() for t in frozen.inputs}
    before = Counter(n.op for n in model.graph_def.node)
    for f in model.reachable_functions():
        before.update(n.op for n in model.functions[f].node_def)
    result = FixResult(gd, shapes, out_keys, before, Counter(n.op for n in gd.node))
    dynamic = any(not s or s[0] is None for s in shapes.values())
    fixed_batch = next(iter(shapes.values()))[0] if shapes and not dynamic else None
    result.max_abs = verify(fn, gd, shapes, out_keys, (1, 3, 64) if fixed_batch is None else (fixed_batch,))
    result.seconds = time.perf_counter() - start
    return result


def _count(gd: graph_pb2.GraphDef, op: str) -> int:
    return sum(n.op == op for n in gd.node)


def verify(fn, gd: graph_pb2.GraphDef, shapes: dict[str, list[int | None]], out_keys: list[str],
           batch_sizes: tuple[int, ...] = (1, 3, 64)) -> dict[int, float]:
    """Max abs difference between the original function and the flat graph at each batch size (a fixed batch
    dimension in `shapes` wins: such a model is checked at its own batch only)."""
    flat = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
    pruned = flat.prune([flat.graph.get_tensor_by_name(f"{k}:0") for k in shapes],
                        [flat.graph.get_tensor_by_name(f"{k}:0") for k in out_keys])
    rng = np.random.default_rng(0)
    errors = {}
    for b in batch_sizes:
        feeds = {k: rng.standard_normal([b if d is None else d for d in s]).astype(np.float32)
                 for k, s in shapes.items()}
        want = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        want = [want[k] for k in out_keys] if isinstance(want, dict) else list(want)
        got = pruned(*[tf.constant(v) for v in feeds.values()])
        errors[b] = max(float(np.max(np.abs(np.asarray(w) - np.asarray(g)))) for w, g in zip(want, got))
    return errors


def write(result: FixResult, out_dir: str | os.PathLike, atol: float = 1e-5, force: bool = False) -> Path:
    """Write model.pb, saved_model/ and model.json (the schema `convert` writes) atomically; refuse a mismatch."""
    bad = {b: e for b, e in result.max_abs.items() if not e <= atol}
    if bad:
        raise VerificationFailed(f"the fixed model differs from the original (max abs {bad} > {atol}); nothing written.")
    out = Path(out_dir).absolute()
    with output_lock(out):
        if out.exists() and not force:
            raise OutputExists(f"output directory '{out}' already exists; pass force=True to replace it.")
        with staging_dir(out) as tmp:
            (tmp / "model.pb").write_bytes(result.graph_def.SerializeToString())
            names = save_flat_saved_model(result.graph_def, result.inputs, result.outputs, tmp / "saved_model")
            nodes = {n.name: n for n in result.graph_def.node}
            inputs = [model_json.endpoint(k, tf.as_dtype(nodes[k].attr["dtype"].type).name, shape, k,
                                          {"argument": py_identifier(k), "tensor": names["inputs"][k]})
                      for k, shape in result.inputs.items()]
            outputs = [model_json.endpoint(k, _dtype(nodes[k]), None, k,
                                           {"key": py_identifier(k), "tensor": names["outputs"][k]})
                       for k in result.outputs]
            model_json.write(tmp, "graphport doctor --fix", inputs, outputs, max_abs_error=result.max_abs,
                             op_census=dict(result.after.most_common()), doctor_fix_seconds=round(result.seconds, 3))
            replace_dir(tmp, out)
    result.out_dir = out
    return out


def _dtype(node) -> str:
    """An output op's element type: its `T` (Identity and most ops) or `dtype` attribute."""
    for key in ("T", "dtype"):
        if key in node.attr:
            return tf.as_dtype(node.attr[key].type).name
    return "float32"
