"""Write the three artifacts: frozen `model.pb`, a callable TF2 `saved_model/`, and `model.json`.

The SavedModel's single function imports the frozen GraphDef, so its weights are `Const`s inside the function:
no variables and no weights as function arguments (the form that loads fast in old C API hosts, design.md §1).
"""

from __future__ import annotations

import inspect
import json
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


def write_saved_model(emitted: Emitted, graph: Graph, path: Path) -> dict:
    """Save a TF2 SavedModel callable as `m(<input>=x)`; return the C API tensor names of its serving signature."""
    args = [py_identifier(n) for n in graph.inputs]
    keys = [py_identifier(n) for n in graph.outputs]
    specs = []
    for name, arg in zip(graph.inputs, args):
        v = graph.values[name]
        shape = None if v.shape is None else [d if isinstance(d, int) else None for d in v.shape]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(v.dtype), name=arg))
    input_map_keys = [f"{emitted.inputs[n]}:0" for n in graph.inputs]
    fetches = [f"{emitted.outputs[n]}:0" for n in graph.outputs]
    graph_def = emitted.graph_def

    def body(*tensors):
        outs = tf.graph_util.import_graph_def(graph_def, input_map=dict(zip(input_map_keys, tensors)),
                                              return_elements=fetches, name="model")
        return dict(zip(keys, outs))

    body.__signature__ = inspect.Signature(
        [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args])
    fn = tf.function(body, input_signature=specs)
    module = tf.Module()
    module.__call__ = fn
    tf.saved_model.save(module, str(path), signatures={"serving_default": fn})
    return serving_names(path, graph, args, keys)


def serving_names(path: Path, graph: Graph, args: list[str], keys: list[str]) -> dict:
    """Read back what a C API host must pass: the signature's tensor names, as written."""
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    return {
        "inputs": {n: {"argument": a, "tensor": sig.inputs[a].name} for n, a in zip(graph.inputs, args)},
        "outputs": {n: {"key": k, "tensor": sig.outputs[k].name} for n, k in zip(graph.outputs, keys)},
    }


def write_json(meta: dict, path: Path) -> None:
    path.write_text(json.dumps(meta, indent=2, default=str) + "\n")
