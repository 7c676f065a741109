"""Specialise a model before conversion: inputs to constants (`--fix-input sr=16000`) and symbolic dims to sizes
(`--fix-dim sequence=512`), so that `If` nodes branching on them fold away while the batch stays dynamic.

Both work on the ONNX model, not the IR, so the verification reference (ONNX Runtime) runs the same specialised
model: pass the result both to `to_ir` and, serialised, to `verify`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from graphport.core.errors import GraphportError


def fix_inputs(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose inputs named in `values` are initializers with those values."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    by_name = {vi.name: vi for vi in g.input if vi.name not in inits}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise GraphportError(f"--fix-input names {', '.join(map(repr, unknown))}, which the model does not take as "
                             f"input; its inputs are: {', '.join(map(repr, by_name)) or 'none'}.")
    for name, value in values.items():
        vi = by_name[name]
        tt = vi.type.tensor_type
        arr = np.asarray(value, dtype=helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if tt.HasField("shape"):
            want = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if len(want) != arr.ndim and arr.size == 1 and None not in want and int(np.prod(want)) == 1:
                arr = arr.reshape(want)
            if len(want) != arr.ndim or any(w is not None and w != s for w, s in zip(want, arr.shape)):
                raise GraphportError(f"--fix-input {name}: a value of shape {list(arr.shape)} does not fit the "
                                     f"input's shape {[w if w is not None else '?' for w in want]}.")
        g.initializer.append(numpy_helper.from_array(arr, name))
        g.input.remove(vi)
    return out


def fix_dims(model: onnx.ModelProto, sizes: dict[str, int]) -> onnx.ModelProto:
    """A copy of `model` whose input dims named in `sizes` (an ONNX dim_param, or graphport's `INPUT_dimAXIS` for an
    unnamed dim) have that size, wherever the name appears on the graph's inputs, outputs and value_info."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    named = input_dims(out)
    unknown = sorted(set(sizes) - set(named))
    if unknown:
        raise GraphportError(f"--fix-dim names {', '.join(map(repr, unknown))}, which is not a symbolic dim of the "
                             f"model's inputs; those are: {', '.join(map(repr, named)) or 'none'}.")
    bad = {k: v for k, v in sizes.items() if int(v) < 1}
    if bad:
        raise GraphportError(f"--fix-dim sizes must be >= 1, got {bad}.")
    for name, dims in named.items():
        if name in sizes:
            for d in dims:
                d.dim_value = int(sizes[name])
    for vi in list(g.output) + list(g.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in sizes:
                d.dim_value = int(sizes[d.dim_param])
    return out


def input_dims(model: onnx.ModelProto) -> dict[str, list[onnx.TensorShapeProto.Dimension]]:
    """Symbolic dims of the graph inputs by name: the dim_param, or `INPUT_dimAXIS` when the dim has none (the name
    the IR gives it)."""
    inits = {t.name for t in model.graph.initializer}
    named: dict[str, list] = {}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.tensor_type.HasField("shape"):
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                named.setdefault(d.dim_param or f"{vi.name}_dim{axis}", []).append(d)
    return named
