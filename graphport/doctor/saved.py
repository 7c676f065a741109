"""A TF2 SavedModel around a flat GraphDef, in the form `convert` writes (design.md §1).

Its single function imports the flat graph, so weights stay Consts inside it: no variables and no weights as
function arguments. Generic over names and shapes (graphport/artifacts.py needs its own IR for that).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from graphport.artifacts import py_identifier


def save_flat_saved_model(gd: graph_pb2.GraphDef, inputs: dict[str, list[int | None]], outputs: list[str],
                          path: Path) -> dict:
    """Save `gd` callable as `m(<input>=x)`; return the C API tensor names of its serving signature."""
    args = [py_identifier(k) for k in inputs]
    keys = [py_identifier(k) for k in outputs]
    dtypes = {n.name: n.attr["dtype"].type for n in gd.node if n.op == "Placeholder"}
    specs = [tf.TensorSpec(shape, tf.as_dtype(dtypes[k]), name=a) for (k, shape), a in zip(inputs.items(), args)]

    def body(*tensors):
        outs = tf.graph_util.import_graph_def(gd, input_map={f"{k}:0": t for k, t in zip(inputs, tensors)},
                                              return_elements=[f"{k}:0" for k in outputs], name="model")
        return dict(zip(keys, outs))

    body.__signature__ = inspect.Signature(
        [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args])
    fn = tf.function(body, input_signature=specs)
    module = tf.Module()
    module.__call__ = fn
    tf.saved_model.save(module, str(path), signatures={"serving_default": fn})
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    return {"inputs": {k: sig.inputs[a].name for k, a in zip(inputs, args)},
            "outputs": {k: sig.outputs[o].name for k, o in zip(outputs, keys)}}
