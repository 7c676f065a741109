"""Lazy layout in `emit/tf/context.py`: Transpose only relabels, convs stay channels-last without Transposes, and
a restore that moves only size-1 axes is a Reshape."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from onnx import TensorProto, helper

import graphport
from graphport.emit.tf import build_graph_def
from graphport.emit.tf.context import EmitContext, _transpose
from graphport.emit.tf.reshape import layout_after_reshape, reshape_groups
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


def test_reshape_groups_are_merges_and_splits_of_neighbouring_axes():
    assert reshape_groups([2, 3, 4, 5], [2, 3, 20]) == [([0], [0]), ([1], [1]), ([2, 3], [2])]
    assert reshape_groups(["N", 6, 5], ["N", 2, 3, 5]) == [([0], [0]), ([1], [1, 2]), ([2], [3])]
    assert reshape_groups([2, 1, 6], [2, 6, 1]) == [([0], [0]), ([2], [1])]  # size-1 axes belong to no group
    assert reshape_groups([4, 6], [6, 4]) is None  # 4*6 -> 6*4 both merges and splits
    assert reshape_groups(["N", 6], ["M", 6]) is None  # a named dim maps to itself only
    assert reshape_groups([None, 6], [2, 3]) is None


def test_layout_after_reshape_keeps_groups_that_lie_in_order():
    nhwc = (0, 2, 3, 1)  # NCHW values stored channels-last
    assert layout_after_reshape(nhwc, ["N", 8, 4, 5], ["N", 8, 20]) == (0, 2, 1)  # [N, H*W, C] stored
    assert layout_after_reshape((0, 2, 1), ["N", 8, 20], ["N", 8, 4, 5]) == nhwc  # tokens back to NHWC
    assert layout_after_reshape(nhwc, ["N", 8, 4, 5], ["N", 160]) is None  # C*H*W is out of order in NHWC
    assert layout_after_reshape((0, 2, 1, 3), ["N", 3, 2, 4], ["N", 3, 8]) is None  # a head merge needs a copy


def _patch_embedding(inverse: bool):
    """Conv -> flatten(2) -> transpose(1, 2) (a transformer's patch embedding), then, with `inverse`, the tokens
    back into an image for a second conv (transpose(1, 2) -> reshape(N, C, H, W))."""
    rng = np.random.default_rng(2)
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 2, 2], rng.standard_normal(96).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [4, 8, 3, 3], rng.standard_normal(288).astype(np.float32))
    flat = helper.make_tensor("flat", TensorProto.INT64, [3], [0, 8, -1])
    image = helper.make_tensor("image", TensorProto.INT64, [4], [0, 8, 4, 5])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2]),
             helper.make_node("Reshape", ["c", "flat"], ["f"]),
             helper.make_node("Transpose", ["f"], ["tokens" if inverse else "y"], perm=[0, 2, 1])]
    if inverse:
        nodes += [helper.make_node("Relu", ["tokens"], ["r"]),
                  helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1]),
                  helper.make_node("Reshape", ["rt", "image"], ["img"]),
                  helper.make_node("Conv", ["img", "w2"], ["y"], pads=[1, 1, 1, 1])]
    y_shape = ["N", 4, 4, 5] if inverse else ["N", 20, 8]
    return _model(nodes, [w, w2, flat, image], ["N", 3, 8, 10], y_shape)


def test_patch_embedding_and_its_inverse_reshape_in_the_stored_layout(tmp_path):
    for inverse in (False, True):
        report = graphport.convert(_patch_embedding(inverse), tmp_path / str(inverse), batch_sizes=(1, 3))
        assert report.ok  # equal to ONNX Runtime
        gd = tf.compat.v1.GraphDef()
        gd.ParseFromString((tmp_path / str(inverse) / "model.pb").read_bytes())
        transposes = [n for n in gd.node if n.op == "Transpose"]
        # only the NCHW input, and (inverse) the NCHW output of the last conv; none around the reshapes
        assert len(transposes) == (2 if inverse else 1), [n.input[0] for n in transposes]


def test_a_wrong_layout_after_reshape_fails_verification(tmp_path, monkeypatch):
    """Guard: verification catches a reshape whose result is labelled with the wrong layout."""
    from graphport.emit.tf import reshape

    real = reshape.layout_after_reshape

    def wrong(perm, in_dims, out_dims):
        right = real(perm, in_dims, out_dims)
        return None if right is None else (right[0], *reversed(right[1:]))

    monkeypatch.setattr(reshape, "layout_after_reshape", wrong)
    report = graphport.convert(_patch_embedding(False), tmp_path / "out", batch_sizes=(1, 3))
    assert not report.ok


def test_a_pad_between_conv_and_pool_stays_channels_last(tmp_path):
    """Keras's ResNet50 through tf2onnx: conv -> Relu -> Pad -> MaxPool. The Pad pads the stored channels-last
    tensor with its pairs permuted, and the conversion (verified against ORT) holds only the Transposes of the
    NCHW input and output (4 when the Pad ran in ONNX order); a reflect pad likewise."""
    rng = np.random.default_rng(2)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.standard_normal(108).astype(np.float32))
    for mode, pads in (("constant", [0, 0, 1, 2, 0, 0, 2, 1]), ("reflect", [0, 0, 1, 1, 0, 0, 1, 1])):
        p = helper.make_tensor("p", TensorProto.INT64, [8], pads)
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
                 helper.make_node("Pad", ["r", "p"], ["q"], mode=mode),
                 helper.make_node("MaxPool", ["q"], ["y"], kernel_shape=[3, 3], strides=[2, 2])]
        path = tmp_path / f"{mode}.onnx"
        path.write_bytes(_model(nodes, [w, p], ["N", 3, 12, 10], ["N", 4, 6, 5]).SerializeToString())
        report = graphport.convert(path, tmp_path / mode, batch_sizes=(1, 3))
        assert report.ok and report.transposes == 2, (mode, report.transposes)  # the NCHW input and output
