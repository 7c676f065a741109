"""Load an ONNX file safely and lift it into the IR.

Safety first: the file is parsed from bytes we read ourselves (never modified), external data must stay inside the
model's folder, and the checker and strict shape inference run before anything else looks at the graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from graphport.core.errors import InvalidModel
from graphport.ir.attrs import decode_attrs
from graphport.ir.graph import Dim, Graph, Node, Value

MAX_OPSET = onnx.defs.onnx_opset_version()  # what the installed onnx (its checker and inference) knows


def load_model(source: str | os.PathLike | onnx.ModelProto,
               second_opinion: Callable[[bytes], object] | None = None) -> tuple[onnx.ModelProto, bytes]:
    """Return the validated model with external data loaded, and the original bytes (for hashing and ORT).

    `second_opinion` loads the serialized model in a reference runtime and raises InvalidModel when it refuses it
    (the converter passes `runtime.reference.reference_session`; `ir` does not import the runtime). With it, the
    checker's full check runs too, and its verdict stands when the reference refuses the model as well."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        base_dir = None
    else:
        path = Path(source)
        if path.is_dir():
            raise InvalidModel(f"'{path}' is a directory; pass the .onnx file inside it.")
        if not path.exists():
            raise InvalidModel(f"'{path}' does not exist.")
        data = path.read_bytes()
        if not data:
            raise InvalidModel(f"'{path}' is empty (0 bytes); it is not an ONNX model.")
        try:
            model = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf raises DecodeError and friends
            raise InvalidModel(f"'{path}' is not a readable ONNX model (truncated or corrupt protobuf: {e}).") from e
        if not model.graph.node and not model.graph.output:
            raise InvalidModel(f"'{path}' parsed as protobuf but holds no ONNX graph; is it an ONNX file?")
        base_dir = path.resolve().parent
    _load_external_data(model, base_dir)
    opset = default_opset(model)
    if opset > MAX_OPSET:
        raise InvalidModel(f"the model uses opset {opset}; graphport knows opsets up to {MAX_OPSET}.")
    _check_wiring(model.graph)
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as e:
        raise InvalidModel(f"the ONNX checker rejects this model: {_first_line(e)}") from e
    serialized = model.SerializeToString()
    if second_opinion is not None:
        _check_strictly(model, serialized, second_opinion)
    return model, serialized


def _check_strictly(model: onnx.ModelProto, serialized: bytes, second_opinion: Callable[[bytes], object]) -> None:
    """The checker's full check (strict type and shape inference): a declared type that contradicts its op (a float
    NonMaxSuppression output) is the model's fault, and is said here rather than deep inside a pass. Strict
    inference also fails on some valid models (a function body it cannot expand, as MeanVarianceNormalization's;
    shapes it propagates wrongly through a MelWeightMatrix), so its verdict stands only when ONNX Runtime refuses the
    model too."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - the checker and inference raise several unrelated types
        try:
            second_opinion(serialized)  # ORT is loaded only for a model that fails
        except InvalidModel as refused:
            raise InvalidModel(f"the ONNX checker rejects this model: {_first_line(e)} ({refused})") from e


def _first_line(e: Exception) -> str:
    """The checker's message without its blank padding lines, element types by name ("(7) vs (1)" is unreadable)."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(e).__name__
    return re.sub(r"\((\d+)\) vs \((\d+)\)",
                  lambda m: f"{_type_name(int(m[1]))} inferred vs {_type_name(int(m[2]))} declared", text)


def _type_name(elem_type: int) -> str:
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return f"type {elem_type}"


def _check_wiring(graph: onnx.GraphProto) -> None:
    """Name the dangling input or the cycle: the checker reports both as 'not topologically sorted'."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    defined |= {t.values.name for t in graph.sparse_initializer}
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output}
    for n in graph.node:
        for i in n.input:
            if i not in defined and i not in producer:
                raise InvalidModel(f"node '{n.name or n.op_type}' reads '{i}', which no node, graph input or "
                                   f"initializer defines.")
    users: dict[int, list[int]] = {}
    waiting = []
    for k, n in enumerate(graph.node):
        deps = {producer[i] for i in n.input if i in producer}
        waiting.append(len(deps))
        for d in deps:
            users.setdefault(d, []).append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    done: set[int] = set()
    while ready:  # Kahn's order: what is never ready sits on or behind a cycle
        k = ready.pop()
        done.add(k)
        for u in users.get(k, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if len(done) < len(graph.node):
        stuck = [graph.node[k].name or graph.node[k].op_type for k in range(len(graph.node)) if k not in done]
        raise InvalidModel(f"the graph has a cycle (through or behind node(s) {', '.join(stuck[:6])}); "
                           f"ONNX graphs must be acyclic.")


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise InvalidModel("the model imports no default-domain ('ai.onnx') opset.")


def _load_external_data(model: onnx.ModelProto, base_dir: Path | None) -> None:
    """Resolve external tensors ourselves so that no path can leave the model's folder (no '..', no absolute path,
    no symlink pointing outside)."""
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        loc = info.get("location", "")
        if base_dir is None:
            raise InvalidModel(f"tensor '{tensor.name}' has external data but the model was passed in memory.")
        target = (base_dir / loc).resolve()
        if os.path.isabs(loc) or ".." in Path(loc).parts or base_dir not in target.parents:
            raise InvalidModel(
                f"tensor '{tensor.name}' points its external data at '{loc}', outside the model's folder "
                f"'{base_dir}'; graphport only reads external data that lives beside the model.")
        if not target.is_file():
            raise InvalidModel(f"external data file '{loc}' of tensor '{tensor.name}' is missing.")
        offset, length = int(info.get("offset", 0)), info.get("length")
        with open(target, "rb") as f:
            f.seek(offset)
            raw = f.read(int(length)) if length is not None else f.read()
        if length is not None and len(raw) != int(length):
            raise InvalidModel(f"external data file '{loc}' is shorter than tensor '{tensor.name}' needs.")
        tensor.raw_data = raw
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _all_tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t


def value_type(vi: onnx.ValueInfoProto) -> tuple[np.dtype | None, tuple[Dim, ...] | None]:
    """(element dtype, shape with ints, dim_param names and None) of a value; None for what is not given."""
    tt = vi.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
    if not tt.HasField("shape"):
        return dtype, None
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
    return dtype, shape


def to_ir(model: onnx.ModelProto) -> Graph:
    """Lift a validated model into the IR, with shapes from ONNX shape inference."""
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:
        raise InvalidModel(f"ONNX shape inference fails on this model: {_first_line(e)}") from e
    g = inferred.graph
    init_names = {t.name for t in g.initializer}
    values: dict[str, Value] = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dtype, shape = value_type(vi)
        values[vi.name] = Value(vi.name, dtype, shape)
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        values[t.name] = Value(t.name, arr.dtype, arr.shape, arr)
    inputs = [vi.name for vi in g.input if vi.name not in init_names]
    graph = Graph([], values, inputs, [o.name for o in g.output], default_opset(model),
                  domain_opsets={i.domain: i.version for i in model.opset_import if i.domain not in ("", "ai.onnx")})
    for name in inputs:
        v = values[name]
        if v.shape is None:
            continue
        dims = list(v.shape)
        for axis, d in enumerate(dims):
            if d is None or isinstance(d, str):
                sym = d if isinstance(d, str) else f"{name}_dim{axis}"
                graph.symbols.setdefault(sym, (name, axis))
                dims[axis] = sym
        v.shape = tuple(dims)
    graph.nodes = [_lift_node(n, i, graph) for i, n in enumerate(g.node)]
    # Symbols that appear on intermediate values but on no graph input cannot be computed at run time.
    for v in values.values():
        if v.shape is not None and v.const is None:
            v.shape = tuple(d if not isinstance(d, str) or d in graph.symbols else None for d in v.shape)
    return graph


def _lift_node(n: onnx.NodeProto, index: int, scope: Graph) -> Node:
    """The one NodeProto -> Node lifting: attributes decoded with schema defaults, bodies (GRAPH and GRAPHS
    attributes of If, Loop, Scan) lifted into IR graphs here, once, so that nothing downstream reads a GraphProto."""
    attrs = decode_attrs(n, scope.opset)
    for key, value in attrs.items():
        if isinstance(value, onnx.GraphProto):
            attrs[key] = lift_body(value, scope)
        elif isinstance(value, list) and value and isinstance(value[0], onnx.GraphProto):
            attrs[key] = [lift_body(v, scope) for v in value]
    return Node(n.op_type, n.name or f"{n.op_type}_{index}", list(n.input), list(n.output), attrs,
                n.domain if n.domain != "ai.onnx" else "")


def lift_body(body: onnx.GraphProto, outer: Graph) -> Graph:
    """A subgraph as an IR graph of its own values (declared inputs, outputs and intermediates, initializers as
    constants); it reads outer values by name, as ONNX scoping allows. Dims named by no input symbol of the model
    are unknown."""
    values: dict[str, Value] = {}
    for vi in list(body.value_info) + list(body.output) + list(body.input):
        dtype, shape = value_type(vi)
        if shape is not None:
            shape = tuple(d if not isinstance(d, str) or d in outer.symbols else None for d in shape)
        values[vi.name] = Value(vi.name, dtype, shape)
    for t in body.initializer:
        arr = numpy_helper.to_array(t)
        values[t.name] = Value(t.name, arr.dtype, arr.shape, arr)
    sub = Graph([], values, [i.name for i in body.input], [o.name for o in body.output], outer.opset,
                outer.symbols, outer.domain_opsets)
    sub.nodes = [_lift_node(n, i, sub) for i, n in enumerate(body.node)]
    return sub
