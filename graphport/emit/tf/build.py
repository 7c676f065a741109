"""Drive the op handlers over the IR and produce a frozen, flat GraphDef that libtensorflow 2.5 can import."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from graphport.core.errors import UnsupportedModel
from graphport.emit.tf.compat import legacy_problems, strip_default_attrs
from graphport.emit.tf.context import EmitContext, tf_name
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import lookup
from graphport.emit.tf.remapper_guard import move_depthwise_bias_past_add
from graphport.ir.graph import Graph


@dataclass
class Emitted:
    graph_def: graph_pb2.GraphDef
    inputs: dict[str, str]   # ONNX input name -> TF op name
    outputs: dict[str, str]  # ONNX output name -> TF op name


def check_supported(graph: Graph) -> None:
    """Fail before emitting anything, naming every node whose op graphport has no handler for."""
    missing = [(n.op_type if not n.domain else f"{n.domain}.{n.op_type}", n.name, graph.opset_of(n), "no converter")
               for n in graph.nodes if lookup(n.op_type, graph.opset_of(n), n.domain) is None]
    if missing:
        raise UnsupportedModel(missing)


def build_graph_def(graph: Graph) -> Emitted:
    check_supported(graph)
    inputs = {n: tf_name(n) for n in graph.inputs}
    outputs = {n: tf_name(n) for n in graph.outputs}
    g = tf.Graph()
    ctx = EmitContext(graph, set(inputs.values()) | set(outputs.values()))
    declined: list[tuple[str, str, int, str]] = []
    with g.as_default():
        for name in graph.inputs:
            v = graph.values[name]
            try:
                dtype = tf.as_dtype(v.dtype)
            except TypeError:  # nodes that read it are skipped below, so the model is refused as a whole
                why = f"element type {v.dtype} has no TF dtype" if v.dtype is not None else "not a tensor"
                declined.append(("graph input", name, graph.opset, why))
                continue
            shape = None if v.shape is None else [d if isinstance(d, int) else None for d in v.shape]
            ctx.set(name, tf.compat.v1.placeholder(dtype, shape, name=inputs[name]))
        for node in graph.nodes:
            if declined and any(i and i not in ctx.tensors and ctx.const(i) is None for i in node.inputs):
                continue
            try:
                with g.name_scope(ctx.op_name(node.name) + "/"):
                    lookup(node.op_type, graph.opset_of(node), node.domain)(ctx, node)
            except Decline as e:
                declined.append((node.op_type, node.name, graph.opset, str(e)))
        if declined:
            raise UnsupportedModel(declined)
        for name in graph.outputs:
            t = ctx.onnx_order(name)
            want = graph.values[name].dtype
            if want is not None and t.dtype != tf.as_dtype(want):
                t = tf.cast(t, tf.as_dtype(want))
            tf.identity(t, name=outputs[name])
    gd = g.as_graph_def()
    move_depthwise_bias_past_add(gd)  # TF's oneDNN remapper would build an op-less node there (remapper_guard.py)
    strip_default_attrs(gd)
    problems = legacy_problems(gd)
    if problems:
        raise UnsupportedModel([(f"TF {op}", name, graph.opset, f"would not import in libtensorflow 2.5: {why}")
                                for op, name, why in problems])
    names = {n.name for n in gd.node}
    missing = [v for v in list(inputs.values()) + list(outputs.values()) if v not in names]
    if missing:
        raise RuntimeError(f"internal: TF renamed I/O ops {missing}")
    return Emitted(gd, inputs, outputs)
