"""IR back to ONNX protobufs, for the two places that run one node through ONNX's own machinery: the reference
evaluator (constant folding, passes/fold.py) and ONNX's shape inference after folding (passes/infer.py).

An `If`/`Loop`/`Scan` carries its bodies as IR graphs (ir/from_onnx.py lifts them once); ONNX needs them as
GraphProtos again, and this is the one place that writes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from graphport.ir.graph import Graph, Value


def encode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes as `onnx.helper.make_node` takes them: tensors as TensorProtos, bodies as GraphProtos."""
    return {k: _encode(v) for k, v in attrs.items()}


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return numpy_helper.from_array(value)
    if isinstance(value, Graph):
        return graph_proto(value)
    if isinstance(value, list) and value and all(isinstance(v, Graph) for v in value):
        return [graph_proto(v) for v in value]
    return value


def graph_proto(graph: Graph, name: str = "body") -> onnx.GraphProto:
    """A body graph as ONNX: its nodes, inputs and outputs with their types, its constants as initializers."""
    nodes = [helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name, domain=n.domain or None,
                              **encode_attrs(n.attrs)) for n in graph.nodes]
    io = set(graph.inputs) | set(graph.outputs)
    inits = [numpy_helper.from_array(v.const, k) for k, v in graph.values.items()
             if v.const is not None and k not in io and v.const.dtype != object]
    return helper.make_graph(nodes, name, [_value_info(graph, i) for i in graph.inputs],
                             [_value_info(graph, o) for o in graph.outputs], inits)


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    v = graph.values.get(name) or Value(name)
    if v.dtype is None:
        return helper.make_value_info(name, onnx.TypeProto())
    shape = None if v.shape is None else [d if isinstance(d, (int, str)) else None for d in v.shape]
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), shape)
