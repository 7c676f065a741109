"""Per-node shape refinement with ONNX's own inference functions, fed the constants folding has just found.

ONNX shape inference runs once, before folding, and loses every dim behind a value it cannot compute then (a Pad
whose pads come from `Shape -> Div -> Cast` arithmetic, as in dynamic "same" padding). Once folding has made
such inputs constant, re-inferring the node recovers its output shape, and downstream `Shape` nodes fold too.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from graphport.ir.graph import Dim, Graph, Node


def refine_shapes(graph: Graph, node: Node) -> None:
    """Fill unknown output dims (and dtypes) of `node` from its current input shapes and constant inputs."""
    outs = [graph.value(o) for o in node.outputs if o]
    if all(v.shape is not None and None not in v.shape and v.dtype is not None for v in outs):
        return
    try:
        inferred = _infer(graph, node)
    except Exception:  # noqa: BLE001  no schema, odd attribute form, inference error: keep what we had
        return
    for v in outs:
        tp = inferred.get(v.name)
        if tp is None or not tp.HasField("tensor_type"):
            continue
        tt = tp.tensor_type
        if v.dtype is None and tt.elem_type:
            v.dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if tt.HasField("shape"):
            v.shape = _merge(v.shape, [_dim(graph, d) for d in tt.shape.dim])


def _infer(graph: Graph, node: Node) -> dict[str, onnx.TypeProto]:
    types, data = {}, {}
    for name in node.inputs:
        if not name:
            continue
        v = graph.values.get(name)
        if v is None or v.dtype is None:
            raise ValueError(f"no type for '{name}'")
        types[name] = helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype)), v.shape)
        if v.const is not None and v.const.dtype != object:
            data[name] = numpy_helper.from_array(v.const, name)
    attrs = {k: numpy_helper.from_array(a) if isinstance(a, np.ndarray) else a for k, a in node.attrs.items()}
    proto = helper.make_node(node.op_type, node.inputs, node.outputs, domain=node.domain or None, **attrs)
    schema = onnx.defs.get_schema(node.op_type, graph.opset, node.domain)
    return shape_inference.infer_node_outputs(schema, proto, types, data,
                                              opset_imports=[helper.make_opsetid("", graph.opset)])


def _dim(graph: Graph, d: onnx.TensorShapeProto.Dimension) -> Dim:
    if d.HasField("dim_value"):
        return d.dim_value
    return d.dim_param if d.dim_param in graph.symbols else None


def _merge(old: tuple[Dim, ...] | None, new: list[Dim]) -> tuple[Dim, ...]:
    """Known dims win; a rank disagreement (which ONNX would not produce) keeps the old shape."""
    if old is None:
        return tuple(new)
    if len(old) != len(new):
        return old
    return tuple(o if o is not None else n for o, n in zip(old, new))
