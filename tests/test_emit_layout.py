"""Lazy layout in `emit/tf/context.py`: Transpose only relabels, convs stay channels-last without Transposes, and
a restore that moves only size-1 axes is a Reshape."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from onnx import TensorProto, helper

from graphport.emit.tf import build_graph_def
from graphport.emit.tf.context import EmitContext, _transpose
from graphport.emit.tf.tensor import transpose
from graphport.ir.from_onnx import to_ir
from graphport.ir.graph import Graph, Node, Value
from graphport.passes import optimize


def _ops(gd) -> list[str]:
    return [n.op for n in gd.node]


def _model(nodes, inits, x_shape, y_shape, opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                             opset_imports=[helper.make_opsetid("", opset)])


def test_transpose_relabels_the_layout_and_emits_nothing():
    g = Graph([], {"x": Value("x", np.dtype(np.float32), (2, 3, 4, 5))}, ["x"], ["y"], 17)
    with tf.Graph().as_default() as tg:
        ctx = EmitContext(g, set())
        x = tf.compat.v1.placeholder(tf.float32, [2, 3, 4, 5])
        ctx.set("x", x)
        transpose(ctx, Node("Transpose", "t", ["x"], ["y"], {"perm": [0, 2, 3, 1]}))
        assert ctx.raw("y") is x  # same tensor, new label: TF axis i holds ONNX axis perm[i] of y
        assert ctx.perm("y") == (0, 3, 1, 2)
        assert ctx.shape_ints("y") == [2, 4, 5, 3]
        transpose(ctx, Node("Transpose", "u", ["y"], ["z"], {"perm": [0, 3, 1, 2]}))
        assert ctx.raw("z") is x and ctx.perm("z") is None  # the inverse cancels: ONNX order again
        assert "Transpose" not in [op.type for op in tg.get_operations()]


def test_conv_chain_transposes_only_its_input():
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [8, 3, 3, 3], rng.standard_normal(216).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [4, 8, 1, 1], rng.standard_normal(32).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"]),
             helper.make_node("Add", ["c2", "c2"], ["a2"]),
             helper.make_node("GlobalAveragePool", ["a2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    emitted = build_graph_def(optimize(to_ir(_model(nodes, [w1, w2], ["N", 3, 16, 16], ["N", 4]))))
    ops = _ops(emitted.graph_def)
    assert ops.count("Conv2D") == 2 and ops.count("MaxPool") == 1
    transposes = [n for n in emitted.graph_def.node if n.op == "Transpose"]
    assert [n.input[0] for n in transposes] == ["x"]  # the NCHW input, once; nothing inside the chain
    assert ops.count("Reshape") >= 1  # [N,1,1,4] -> [N,4,1,1] moves only size-1 axes


def test_a_restore_of_size_one_axes_is_a_reshape_and_others_transpose():
    with tf.Graph().as_default():
        pooled = tf.compat.v1.placeholder(tf.float32, [None, 1, 1, 5])
        assert _transpose(pooled, [0, 3, 1, 2]).op.type == "Reshape"
        assert _transpose(pooled, [0, 3, 1, 2]).shape.as_list() == [None, 5, 1, 1]
        full = tf.compat.v1.placeholder(tf.float32, [None, 2, 3, 5])
        assert _transpose(full, [0, 3, 1, 2]).op.type == "Transpose"
        two_unknown = tf.compat.v1.placeholder(tf.float32, [None, 1, None, 5])
        assert _transpose(two_unknown, [0, 3, 1, 2]).op.type == "Transpose"  # Reshape takes one -1 only


def test_reduction_remaps_axes_instead_of_restoring_the_layout():
    rng = np.random.default_rng(1)
    w = helper.make_tensor("w", TensorProto.FLOAT, [6, 3, 1, 1], rng.standard_normal(18).astype(np.float32))
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("ReduceMean", ["c", "axes"], ["y"], keepdims=0)]
    emitted = build_graph_def(optimize(to_ir(_model(nodes, [w, axes], ["N", 3, 8, 8], ["N", 6], opset=18))))
    ops = _ops(emitted.graph_def)
    assert [n.input[0] for n in emitted.graph_def.node if n.op == "Transpose"] == ["x"]  # the input only
    assert "Mean" in ops
    mean = next(n for n in emitted.graph_def.node if n.op == "Mean")
    axis_const = next(n for n in emitted.graph_def.node if n.name == mean.input[1].split(":")[0])
    assert tf.make_ndarray(axis_const.attr["value"].tensor).tolist() == [1, 2]  # H, W of NHWC
