"""Attributes are decoded once, with the schema defaults of the model's opset (`graphport/ir/attrs.py`)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from graphport.ir.attrs import decode_attrs
from graphport.ir.to_onnx import encode_attrs


def test_defaults_follow_the_models_opset():
    softmax = helper.make_node("Softmax", ["x"], ["y"])
    assert decode_attrs(softmax, 11) == {"axis": 1}
    assert decode_attrs(softmax, 13) == {"axis": -1}
    selu = helper.make_node("Selu", ["x"], ["y"])  # Selu-1's constants are rounder than Selu-6's
    assert abs(decode_attrs(selu, 1)["gamma"] - 1.0507) < 1e-6
    assert abs(decode_attrs(selu, 6)["gamma"] - 1.0507010221) < 1e-9


def test_strings_are_str_and_given_values_win():
    pad = helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")
    assert decode_attrs(pad, 13) == {"mode": "reflect"}
    assert decode_attrs(helper.make_node("Pad", ["x", "p"], ["y"]), 13) == {"mode": "constant"}
    lstm = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4, activations=[b"Relu", b"Tanh", b"Tanh"])
    attrs = decode_attrs(lstm, 14)
    assert attrs["activations"] == ["Relu", "Tanh", "Tanh"] and attrs["direction"] == "forward"
    assert attrs["layout"] == 0 and attrs["hidden_size"] == 4
    assert "layout" not in decode_attrs(lstm, 13)  # added in LSTM-14


def test_tensors_become_arrays_and_round_trip():
    value = helper.make_tensor("v", TensorProto.FLOAT, [2], [1.5, 2.5])
    attrs = decode_attrs(helper.make_node("ConstantOfShape", ["s"], ["y"], value=value), 17)
    np.testing.assert_array_equal(attrs["value"], np.array([1.5, 2.5], np.float32))
    again = helper.make_node("ConstantOfShape", ["s"], ["y"], **encode_attrs(attrs))
    assert numpy_helper.to_array(again.attribute[0].t).tolist() == [1.5, 2.5]


def test_custom_domains_and_constants_get_no_defaults():
    custom = helper.make_node("Softmax", ["x"], ["y"], domain="com.example", flavour=b"odd")
    assert decode_attrs(custom, 13) == {"flavour": "odd"}
    const = helper.make_node("Constant", [], ["y"], value_ints=[1, 2])
    assert decode_attrs(const, 17) == {"value_ints": [1, 2]}


def test_a_pass_editing_attrs_never_edits_the_cached_defaults():
    first = decode_attrs(helper.make_node("Resize", ["x", "", "s"], ["y"]), 18)
    first["mode"] = "linear"
    assert decode_attrs(helper.make_node("Resize", ["x", "", "s"], ["y"]), 18)["mode"] == "nearest"
