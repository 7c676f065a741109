"""Node attributes decoded once, with the ONNX schema's defaults filled in (as onnx.reference's `OpRun` does).

Handlers and passes then read `node.attrs["epsilon"]` plainly: no protobuf bytes to compare against, and no copy
of a schema default that could drift from the one ONNX applies at the model's opset (several defaults and even
attribute sets change between versions, e.g. Softmax's `axis` is 1 before opset 13 and -1 from it on).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def decode_value(value: Any) -> Any:
    """A decoded attribute value in plain Python: str for bytes, numpy arrays for tensors."""
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [_text(v) for v in value]
    return value


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # a binary payload stays bytes rather than being mangled
        return raw


@cache
def schema_defaults(op_type: str, opset: int, domain: str = "") -> dict[str, Any]:
    """{attribute: default} that the op's schema at `opset` declares; {} for ops without a schema."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return {}
    out = {}
    for name, spec in schema.attributes.items():
        default = spec.default_value
        if not default.type or (default.type == onnx.AttributeProto.TENSOR and not default.t.data_type):
            continue  # no default: the attribute is optional, or its absence means something the op defines
        out[name] = decode_value(helper.get_attribute_value(default))
    return out


def decode_attrs(node: onnx.NodeProto, opset: int) -> dict[str, Any]:
    """The node's attributes decoded, plus every schema default it does not set (default domain only: custom
    domains have no schema here, so their attributes stay exactly as given)."""
    attrs = {a.name: decode_value(helper.get_attribute_value(a)) for a in node.attribute}
    if node.domain in ("", "ai.onnx") and node.op_type != "Constant":
        for name, value in schema_defaults(node.op_type, opset).items():
            attrs.setdefault(name, _fresh(value))
    return attrs


def constant_of_shape_value(attrs: dict[str, Any]) -> np.ndarray:
    """ConstantOfShape's fill value. Its schema gives `value` no default_value; the spec's (a float32 zero) is here,
    once, for folding and emitting alike."""
    value = attrs.get("value")
    return np.zeros(1, np.float32) if value is None else value


def _fresh(value: Any) -> Any:
    """A copy of a cached default, so that a pass editing one node's attrs never edits the cache."""
    if isinstance(value, np.ndarray):
        return value.copy()
    return list(value) if isinstance(value, list) else value


def pad_attr(attrs: dict) -> list[int]:
    """The pads of Pad-1 (`paddings`) or Pad-2 (`pads`), both [begin..., end...] over all axes."""
    return list(attrs["pads"] if "pads" in attrs else attrs["paddings"])
