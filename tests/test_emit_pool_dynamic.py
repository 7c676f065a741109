"""Pools and depthwise convs whose windows TF's kernels cannot express natively, over a dynamic length, against ORT.

TF's pools take no dilation, no ceil mode and no explicit pads, and its depthwise conv refuses a stride with a
dilation. graphport builds those from strided slices (one per tap), a padded input and, for AveragePool, a mean of a
ones mask; these are the cases the hypothesis stacks first found refused. Each model is converted (which verifies
at graph-derived lengths) and then checked independently against ORT at every length from the smallest where the
window fits.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from ort_equal import assert_session_equals_ort

from graphport.cli import main


def _model(op: str, attrs: dict, spatial: list[str], inits: tuple = ()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, *spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * (2 + len(spatial)))
    inputs = ["x", *(t.name for t in inits)]
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], name=op.lower(), **attrs)], "g", [x], [y],
                              list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def _fits(length: int, attrs: dict, axis: int = 0) -> bool:
    pads = attrs.get("pads", [0, 0])
    dilation = attrs.get("dilations", [1] * len(attrs["kernel_shape"]))[axis]
    padded = length + pads[axis] + pads[axis + len(attrs["kernel_shape"])]
    return padded >= (attrs["kernel_shape"][axis] - 1) * dilation + 1


POOLS_1D = [
    ("MaxPool", {"kernel_shape": [3], "strides": [2], "dilations": [2]}),
    ("MaxPool", {"kernel_shape": [2], "strides": [3], "dilations": [2], "pads": [1, 1], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3], "strides": [2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "ceil_mode": 1, "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [2], "strides": [1], "dilations": [2], "pads": [1, 1]}),
    ("AveragePool", {"kernel_shape": [3], "strides": [3], "dilations": [2], "pads": [1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3], "strides": [2], "dilations": [2], "pads": [1, 1], "ceil_mode": 1}),
]


@pytest.mark.parametrize("op, attrs", POOLS_1D, ids=lambda v: v if isinstance(v, str) else
                         "-".join(f"{k}{v}" for k, v in v.items()))
def test_1d_pool_over_a_dynamic_length(tmp_path, capsys, op, attrs):
    path = tmp_path / "pool.onnx"
    onnx.save(_model(op, attrs, ["L"]), path)
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().out
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((2, 4, n)).astype(np.float32)} for n in range(1, 14) if _fits(n, attrs)]
    assert len(feeds) >= 8
    assert_session_equals_ort(path, tmp_path / "out", feeds, atol=1e-5)


def test_2d_dilated_ceil_average_pool_over_dynamic_time_and_freq(tmp_path, capsys):
    attrs = {"kernel_shape": [3, 2], "strides": [2, 3], "dilations": [1, 2], "pads": [1, 0, 0, 1], "ceil_mode": 1,
                 "count_include_pad": 1}
    path = tmp_path / "pool2d.onnx"
    onnx.save(_model("AveragePool", attrs, ["T", "F"]), path)
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().out
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 4, t, f)).astype(np.float32)} for t in (2, 5, 8) for f in (2, 3, 7, 10)]
    assert_session_equals_ort(path, tmp_path / "out", feeds, atol=1e-5)


def test_strided_dilated_depthwise_conv_over_a_dynamic_length(tmp_path, capsys):
    """TF's DepthwiseConv2dNative refuses strides > 1 with dilations > 1: the filter is spread instead."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3)).astype(np.float32), "w")
    attrs = {"kernel_shape": [3], "strides": [2], "dilations": [3], "group": 4, "pads": [2, 1]}
    path = tmp_path / "dw.onnx"
    onnx.save(_model("Conv", attrs, ["L"], (w,)), path)
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().out
    feeds = [{"x": rng.standard_normal((2, 4, n)).astype(np.float32)} for n in range(4, 16)]
    assert_session_equals_ort(path, tmp_path / "out", feeds, atol=1e-4)


def test_a_window_after_a_ceil_pool_bounds_the_size(tmp_path, capsys):
    """A ceil_mode pool whose last window may start in its end padding (end pad + stride > span) keeps a symbolic
    output size, ceil((L + begin) / stride), so the window after it bounds L: the long dynamic-dim profile found
    sizing that stopped at the ceil pool and verified where the next window did not fit (exit 1)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "L"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None])
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[4], strides=[4], pads=[1, 1], ceil_mode=1,
                              count_include_pad=1),
             helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3], strides=[2])]
    path = tmp_path / "ceil_then_pool.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[
        helper.make_opsetid("", 19)], ir_version=9), path)
    assert main(["convert", str(path), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().out
    sizes = json.loads((tmp_path / "out" / "model.json").read_text())["verified_dim_sizes"]
    assert min(s["L"] for s in sizes) == 8, sizes  # ceil(9 / 4) = 3 frames: the smallest L the MaxPool fits
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((2, 4, n)).astype(np.float32)} for n in range(8, 30)]
    assert_session_equals_ort(path, tmp_path / "out", feeds, atol=1e-5)
