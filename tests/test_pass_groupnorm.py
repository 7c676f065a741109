"""Exported GroupNorm (Reshape [N, G, -1] -> InstanceNormalization -> Reshape back) runs over split channel groups
on channels-last data, with no Transpose around it; verified against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import graphport
from graphport.passes import groupnorm


def _group_norm_model(opset: int, groups: int = 2, channels: int = 8):
    """Conv -> GroupNorm(groups) as torch exports it (per-channel affine after the reshape back) -> Conv."""
    rng = np.random.default_rng(4)

    def tensor(name, shape, values=None, dtype=TensorProto.FLOAT):
        values = rng.standard_normal(int(np.prod(shape))).astype(np.float32) if values is None else values
        return helper.make_tensor(name, dtype, shape, values)

    inits = [tensor("w1", [channels, 3, 3, 3]), tensor("w2", [4, channels, 1, 1]),
             tensor("ones", [groups], np.ones(groups, np.float32)), tensor("zeros", [groups], np.zeros(groups)),
             tensor("gamma", [channels, 1, 1]), tensor("beta", [channels, 1, 1]),
             tensor("grouped", [3], [0, groups, -1], TensorProto.INT64),
             tensor("back", [4], [0, channels, 6, 6], TensorProto.INT64)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"]),
             helper.make_node("Reshape", ["c", "grouped"], ["g"]),
             helper.make_node("InstanceNormalization", ["g", "ones", "zeros"], ["n"], epsilon=1e-5),
             helper.make_node("Reshape", ["n", "back"], ["r"]),
             helper.make_node("Mul", ["r", "gamma"], ["m"]),
             helper.make_node("Add", ["m", "beta"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 18])
def test_group_norm_needs_no_transpose_inside(tmp_path, opset):
    report = graphport.convert(_group_norm_model(opset), tmp_path / "out", batch_sizes=(1, 3))
    assert report.ok  # equal to ONNX Runtime
    assert report.transposes == 2  # the NCHW input and the NCHW output only
    assert "Mean" in report.tf_ops


def test_group_norm_with_wrong_statistics_fails_verification(tmp_path, monkeypatch):
    """Guard: verification catches statistics taken over the wrong axes (per channel instead of per group)."""
    real = groupnorm._split_group_norm

    def per_channel(graph, first, norm):
        nodes = real(graph, first, norm)
        for n in nodes:
            if n.op_type == "ReduceMean":
                if "axes" in n.attrs:
                    n.attrs["axes"] = n.attrs["axes"][1:]
                else:
                    v = graph.values[n.inputs[1]]
                    v.const = v.const[1:]
                    v.shape = v.const.shape
        return nodes

    monkeypatch.setattr(groupnorm, "_split_group_norm", per_channel)
    report = graphport.convert(_group_norm_model(17), tmp_path / "out", batch_sizes=(1, 3))
    assert not report.ok
