"""Write the converter's artifacts: the frozen `model.pb` and the SavedModel around it (graphport/runtime/
tf_saved_model.py writes it; doctor writes its repaired graphs through the same writer).

The SavedModel's single function imports the frozen GraphDef, so its weights are `Const`s inside the function:
no variables and no weights as function arguments (the form that loads fast in old C API hosts, docs/background.md §1).

A graph with v1 control flow (a recurrent layer over a dynamic length, a runtime If/Loop/Scan) is saved as a
TF1 SavedModel instead: the graph itself in the MetaGraph, with a serving signature. Inside a function,
libtensorflow 2.5 refuses v1 loops ("has inputs from different frames"); as a plain graph it loads them at once.
TF2 loads it too, through `loaded.signatures["serving_default"]` (a TF1 SavedModel is not callable itself).
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from graphport.emit.tf.build import Emitted
from graphport.ir.graph import Graph
from graphport.runtime.tf_saved_model import py_identifier, save_flat_saved_model


def write_pb(emitted: Emitted, path: Path) -> None:
    path.write_bytes(emitted.graph_def.SerializeToString())


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
