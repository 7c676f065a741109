"""A depthwise conv whose ONNX pads TF's SAME does not give runs as SAME over a kernel grown with zero taps,
instead of a Pad (a copy of its whole input) before a VALID conv; verified against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import graphport
from graphport.emit.tf import spatial
from graphport.emit.tf.spatial import same_by_zero_taps


def _depthwise_model(size: int, kernel: int, pad: int, stride: int):
    rng = np.random.default_rng(3)
    c = 6
    w = helper.make_tensor("w", TensorProto.FLOAT, [c, 1, kernel, kernel],
                           rng.standard_normal(c * kernel * kernel).astype(np.float32))
    b = helper.make_tensor("b", TensorProto.FLOAT, [c], rng.standard_normal(c).astype(np.float32))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=c, pads=[pad] * 4, strides=[stride, stride])
    out = (size + 2 * pad - kernel) // stride + 1
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, out, out])],
                              initializer=[w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("size", "kernel", "pad", "stride"), [(16, 3, 1, 2), (16, 5, 2, 2), (12, 3, 1, 3)])
def test_strided_depthwise_conv_needs_no_pad(tmp_path, size, kernel, pad, stride):
    report = graphport.convert(_depthwise_model(size, kernel, pad, stride), tmp_path / "out", batch_sizes=(1, 3))
    assert report.ok  # equal to ONNX Runtime
    assert "Pad" not in report.tf_ops and "DepthwiseConv2dNative" in report.tf_ops


def test_pads_that_no_zero_taps_give_keep_the_pad(tmp_path):
    assert same_by_zero_taps([16, 16], [3, 3], [3, 3], [3, 3], [1, 1]) is None  # more padding than SAME adds
    report = graphport.convert(_depthwise_model(16, 3, 3, 1), tmp_path / "out", batch_sizes=(1, 3))
    assert report.ok and "Pad" in report.tf_ops


def test_zero_taps_on_the_wrong_side_fail_verification(tmp_path, monkeypatch):
    """Guard: verification catches a kernel grown on the wrong side (windows shifted by one row and column)."""
    real = spatial.same_by_zero_taps

    def swapped(*args):
        taps = real(*args)
        return None if taps is None else [(after, before) for before, after in taps]

    monkeypatch.setattr("graphport.emit.tf.conv.same_by_zero_taps", swapped)
    report = graphport.convert(_depthwise_model(16, 3, 1, 2), tmp_path / "out", batch_sizes=(1, 3))
    assert not report.ok
