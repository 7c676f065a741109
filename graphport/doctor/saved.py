"""A TF2 SavedModel around a flat GraphDef, in the form `convert` writes (docs/background.md §1).

The writer lives in graphport/runtime/tf_saved_model.py; this adapts doctor's description of a repaired graph (Placeholder op
names with their shapes) to the TensorSpecs it takes.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from graphport.runtime.tf_saved_model import py_identifier
from graphport.runtime.tf_saved_model import save_flat_saved_model as save_graph_def


def save_flat_saved_model(gd: graph_pb2.GraphDef, inputs: dict[str, list[int | None]], outputs: list[str],
                          path: Path) -> dict:
    """Save `gd` callable as `m(<input>=x)`; return the C API tensor names of its serving signature."""
    dtypes = {n.name: n.attr["dtype"].type for n in gd.node if n.op == "Placeholder"}
    specs = {k: tf.TensorSpec(shape, tf.as_dtype(dtypes[k]), name=py_identifier(k)) for k, shape in inputs.items()}
    return save_graph_def(gd, specs, outputs, path)
