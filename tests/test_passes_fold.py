"""Constant folding over symbolic shapes (`passes/fold.py`) and the shape inference it re-runs (`passes/infer.py`)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from graphport.ir.from_onnx import to_ir
from graphport.ir.graph import Graph
from graphport.ir.symbolic import Sym, is_symbolic
from graphport.passes.fold import fold_constants


def _ir(nodes, inits, outputs, opset=17) -> Graph:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 128, 96])
    outs = [helper.make_tensor_value_info(name, elem, None) for name, elem in outputs]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    return to_ir(model)


def _i64(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _batch_chain(tail_nodes, tail_inits, outputs, opset=17):
    """Shape(x) -> Gather(0) -> Unsqueeze: the batch as a 1-vector `b`, as exporters compute it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["b0"], axis=0),
             helper.make_node("Unsqueeze", ["b0", "axes0"], ["b"])] + tail_nodes
    inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]), _i64("axes0", [0])] + tail_inits
    return _ir(nodes, inits, outputs, opset)


def test_shape_gather_concat_reshape_folds_to_a_symbolic_target():
    g = _batch_chain([helper.make_node("Concat", ["b", "rest"], ["target"], axis=0),
                      helper.make_node("Reshape", ["x", "target"], ["y"])],
                     [_i64("rest", [12288])], [("y", TensorProto.FLOAT)])
    g = fold_constants(g).graph
    assert [n.op_type for n in g.nodes] == ["Reshape"]
    target = g.const("target")
    assert is_symbolic(target) and target.shape == (2,)
    assert target[0] == g.sym("batch") and target[1] == 12288
    assert g.values["y"].shape == ("batch", 12288)


def test_reshape_target_with_one_symbol_is_emitted_as_minus_one():
    import tensorflow as tf

    from graphport.emit.tf.context import EmitContext
    from graphport.emit.tf.tensor import shape_vector

    g = Graph([], {}, [], [], 17, symbols={"batch": ("x", 0)})
    with tf.Graph().as_default():
        ctx = EmitContext(g, set())
        ctx.set("x", tf.compat.v1.placeholder(tf.float32, [None, 128, 96]))
        assert shape_vector(ctx, [g.sym("batch"), 12288]) == [-1, 12288]
        assert shape_vector(ctx, [g.sym("batch"), 4, 3]) == [-1, 4, 3]
        both = shape_vector(ctx, [g.sym("batch"), g.sym("batch") * 4])  # two symbols: a runtime vector
        assert isinstance(both, tf.Tensor) and both.shape.as_list() == [2]
        assert [op.type for op in tf.compat.v1.get_default_graph().get_operations()].count("Shape") == 1


def test_arithmetic_on_symbols_folds_and_shapes_follow():
    """[4*batch, 32, 96]: Mul on a symbol, then ONNX's own inference (which cannot read the symbolic target)
    is replaced by the IR's symbolic Reshape rule, and a later Shape of the result folds too."""
    g = _batch_chain([helper.make_node("Mul", ["b", "four"], ["b4"]),
                      helper.make_node("Concat", ["b4", "rest"], ["target"], axis=0),
                      helper.make_node("Reshape", ["x", "target"], ["y"]),
                      helper.make_node("Shape", ["y"], ["ys"]),
                      helper.make_node("Div", ["ys", "two"], ["half"])],
                     [_i64("four", [4]), _i64("rest", [32, 96]), _i64("two", [2])],
                     [("y", TensorProto.FLOAT), ("half", TensorProto.INT64)])
    g = fold_constants(g).graph
    batch = g.sym("batch")
    assert [n.op_type for n in g.nodes] == ["Reshape"]
    assert g.const("b4")[0] == batch * 4
    y_shape = g.values["y"].shape
    assert isinstance(y_shape[0], Sym) and y_shape[0] == batch * 4 and y_shape[1:] == (32, 96)
    half = g.const("half")
    assert half[0] == batch * 2 and list(half[1:]) == [16, 48]


def test_plain_constant_subgraphs_fold_through_the_reference_evaluator():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 4.0, 9.0])
    nodes = [helper.make_node("Sqrt", ["w"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    g = fold_constants(to_ir(model)).graph
    assert [n.op_type for n in g.nodes] == ["Add"]
    np.testing.assert_array_equal(g.const("r"), np.array([1.0, 2.0, 3.0], np.float32))


def test_undecidable_symbolic_ops_stay_in_the_graph():
    g = _batch_chain([helper.make_node("Equal", ["b", "one"], ["is_one"])],
                     [_i64("one", [1])], [("is_one", TensorProto.BOOL)])
    g = fold_constants(g).graph
    assert [n.op_type for n in g.nodes] == ["Equal"]  # batch == 1 is not known before run time
    assert g.const("b")[0] == g.sym("batch")


def test_squeeze_axes_attribute_before_opset_13_and_input_from_13():
    for opset in (11, 13):
        squeeze = helper.make_node("Squeeze", ["b"], ["b0"], axes=[0]) if opset < 13 else \
            helper.make_node("Squeeze", ["b", "axes0"], ["b0"])
        unsq = helper.make_node("Unsqueeze", ["g"], ["b"], axes=[0]) if opset < 13 else \
            helper.make_node("Unsqueeze", ["g", "axes0"], ["b"])
        nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["g"]),
                 unsq, squeeze, helper.make_node("Mul", ["b0", "three"], ["y"])]
        inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]), _i64("axes0", [0]),
                 helper.make_tensor("three", TensorProto.INT64, [], [3])]
        g = fold_constants(_ir(nodes, inits, [("y", TensorProto.INT64)], opset)).graph
        assert g.nodes == [] and g.const("y").shape == () and g.const("y").item() == g.sym("batch") * 3
