"""Write the three artifacts: frozen `model.pb`, a callable TF2 `saved_model/`, and `model.json`.

The SavedModel's single function imports the frozen GraphDef, so its weights are `Const`s inside the function:
no variables and no weights as function arguments (the form that loads fast in old C API hosts, docs/background.md §1).

A graph with v1 control flow (a recurrent layer over a dynamic length, a runtime If/Loop/Scan) is saved as a
TF1 SavedModel instead: the graph itself in the MetaGraph, with a serving signature. Inside a function,
libtensorflow 2.5 refuses v1 loops ("has inputs from different frames"); as a plain graph it loads them at once.
TF2 loads it too, through `loaded.signatures["serving_default"]` (a TF1 SavedModel is not callable itself).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from graphport.emit.tf.build import Emitted
from graphport.ir.graph import Graph


def py_identifier(name: str) -> str:
    """A keyword-argument name for an ONNX input ('input.1' -> 'input_1')."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"x_{ident}"


def write_pb(emitted: Emitted, path: Path) -> None:
    path.write_bytes(emitted.graph_def.SerializeToString())


def save_flat_saved_model(graph_def, inputs: dict[str, tf.TensorSpec], outputs: list[str], path: Path,
                          keys: list[str] | None = None) -> dict:
    """Save a flat GraphDef as a TF2 SavedModel callable as `m(<arg>=x)`.

    `inputs` maps Placeholder op names to specs (the spec's name is the keyword argument), `outputs` lists op
    names, `keys` the signature's output keys. Returns the C API tensor names of the serving signature, read back
    from what was written: {"inputs": {op: tensor}, "outputs": {op: tensor}}.
    """
    # import_graph_def adds default attr values to the GraphDef it is given, in place; the converter saves while
    # verification serialises the same GraphDef in another thread, and a half-added AttrValue reached the workers
    # ("AttrValue missing value ... 'transpose_b'"). Saving works on its own copy.
    graph_def = type(graph_def).FromString(graph_def.SerializeToString())
    keys = keys or [py_identifier(o) for o in outputs]
    if V1_CONTROL_OPS & {n.op for n in graph_def.node}:
        return _save_v1_saved_model(graph_def, inputs, outputs, path, keys)
    args = [spec.name for spec in inputs.values()]
    input_map_keys = [f"{op}:0" for op in inputs]
    fetches = [f"{op}:0" for op in outputs]

    def body(*tensors):
        outs = tf.graph_util.import_graph_def(graph_def, input_map=dict(zip(input_map_keys, tensors)),
                                              return_elements=fetches, name="model")
        return dict(zip(keys, outs))

    body.__signature__ = inspect.Signature(
        [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args])
    fn = tf.function(body, input_signature=list(inputs.values()))
    module = tf.Module()
    module.__call__ = fn
    tf.saved_model.save(module, str(path), signatures={"serving_default": fn})
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    return {"inputs": {op: sig.inputs[a].name for op, a in zip(inputs, args)},
            "outputs": {op: sig.outputs[k].name for op, k in zip(outputs, keys)}}


V1_CONTROL_OPS = {"Enter", "Exit", "NextIteration", "LoopCond", "Switch", "Merge"}


def _save_v1_saved_model(graph_def, inputs: dict[str, tf.TensorSpec], outputs: list[str], path: Path,
                         keys: list[str]) -> dict:
    """The graph as it is, in a TF1 SavedModel with a `serving_default` signature and no variables."""
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph_def, name="")
        sig = tf.compat.v1.saved_model.predict_signature_def(
            {spec.name: g.get_tensor_by_name(f"{op}:0") for op, spec in inputs.items()},
            {k: g.get_tensor_by_name(f"{op}:0") for op, k in zip(outputs, keys)})
        with tf.compat.v1.Session(graph=g) as sess:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
    return {"inputs": {op: f"{op}:0" for op in inputs}, "outputs": {op: f"{op}:0" for op in outputs}}


def write_saved_model(emitted: Emitted, graph: Graph, path: Path) -> dict:
    """The converter's SavedModel; returns, per ONNX name, the keyword argument or output key and its C API tensor."""
    specs = {}
    for name in graph.inputs:
        v = graph.values[name]
        shape = None if v.shape is None else [d if isinstance(d, int) else None for d in v.shape]
        specs[emitted.inputs[name]] = tf.TensorSpec(shape, tf.as_dtype(v.dtype), name=py_identifier(name))
    keys = [py_identifier(n) for n in graph.outputs]
    names = save_flat_saved_model(emitted.graph_def, specs, [emitted.outputs[n] for n in graph.outputs], path, keys)
    return {
        "inputs": {n: {"argument": py_identifier(n), "tensor": names["inputs"][emitted.inputs[n]]}
                   for n in graph.inputs},
        "outputs": {n: {"key": k, "tensor": names["outputs"][emitted.outputs[n]]} for n, k in zip(graph.outputs, keys)},
    }
