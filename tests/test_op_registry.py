"""The one op registry (emitters and fold kernels) resolves `(domain, op_type, since_version)` against onnx.defs
and refuses ambiguous registrations."""

from __future__ import annotations

import pytest

import graphport.emit.tf  # noqa: F401  registers every handler
from graphport.emit.tf import elementwise, reduce, resize, tensor
from graphport.emit.tf.registry import EMITTERS, RegistryError, lookup, op, since_version
from graphport.ir.op_registry import OpRegistry
from graphport.passes.fold import FOLD_KERNELS, _slice, _slice_1


@pytest.mark.parametrize("op_type, opset, handler", [
    ("Softmax", 11, reduce.softmax_flattened), ("Softmax", 13, reduce.softmax), ("Softmax", 21, reduce.softmax),
    ("ReduceSum", 12, reduce.reduce_axes_attribute), ("ReduceSum", 13, reduce.reduce_axes_input),
    ("ReduceMean", 17, reduce.reduce_axes_attribute), ("ReduceMean", 18, reduce.reduce_axes_input),
    ("Squeeze", 11, tensor.squeeze_1), ("Squeeze", 24, tensor.squeeze),
    ("Slice", 9, tensor.slice_1), ("Slice", 10, tensor.slice_),
    ("Clip", 6, elementwise.clip_1), ("Clip", 12, elementwise.clip),
    ("Upsample", 8, resize.upsample_7), ("Upsample", 9, resize.upsample), ("Resize", 10, resize.upsample),
    ("Resize", 13, resize.resize), ("Resize", 19, resize.resize_18),
    ("Mod", 13, elementwise.mod_10), ("Mod", 28, elementwise.mod),
])
def test_lookup_picks_the_handler_of_the_schema_in_force(op_type, opset, handler):
    assert lookup(op_type, opset) is handler


def test_unknown_ops_and_versions_before_the_first_handler_have_none():
    assert lookup("NoSuchOp", 17) is None
    assert lookup("Upsample", 6) is None  # Upsample-1 (height_scale/width_scale) is not converted
    assert since_version("Softmax", 12) == 11


def test_duplicate_and_invented_versions_are_refused():
    with pytest.raises(RegistryError, match="already"):
        op("Softmax", since=13)(reduce.softmax)
    with pytest.raises(RegistryError, match="no ONNX schema"):
        op("Softmax", since=12)(reduce.softmax)


def test_fold_kernels_resolve_by_version_through_the_same_registry():
    assert FOLD_KERNELS.lookup("Slice", 9) is _slice_1 and FOLD_KERNELS.lookup("Slice", 13) is _slice
    assert FOLD_KERNELS.lookup("Slice", 13, domain="com.example") is None
    with pytest.raises(RegistryError, match="already"):
        FOLD_KERNELS.register("Slice", since=10)(_slice)


def test_entries_are_keyed_by_domain():
    table: OpRegistry[str] = OpRegistry("entry")
    table.register("Gelu", domain="com.microsoft")("custom gelu")
    table.register("Gelu", since=20)("onnx gelu")
    assert table.lookup("Gelu", 1, domain="com.microsoft") == "custom gelu"
    assert table.lookup("Gelu", 20) == "onnx gelu" and table.lookup("Gelu", 20, domain="ai.onnx") == "onnx gelu"
    assert table.lookup("Gelu", 19) is None  # Gelu is in the default domain from opset 20 on
    assert table.op_types("com.microsoft") == ["Gelu"] and table.op_types() == ["Gelu"]
    assert lookup("Relu", 17, domain="com.example") is None  # a custom domain has no emitters


def test_override_is_a_public_hook_that_restores():
    original = lookup("Relu", 17)
    restore = EMITTERS.override("Relu", "broken")
    assert lookup("Relu", 17) == "broken"
    restore()
    assert lookup("Relu", 17) is original
