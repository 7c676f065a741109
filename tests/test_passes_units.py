"""Every pass on small IR graphs of its own: it rewrites what it should, says whether it changed the graph, leaves
a graph that lints, and computes what the graph computed before, as ONNX's reference evaluator runs both."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from graphport.ir.graph import Graph, LintError, Node, PassResult, Value
from graphport.ir.to_onnx import graph_proto
from graphport.passes import PIPELINE, optimize
from graphport.passes.bodies import fold_bodies
from graphport.passes.cleanup import eliminate_dead_code
from graphport.passes.control import fold_if, mark_implicit_inputs, unroll_loops
from graphport.passes.fuse import fold_batchnorm_into_conv, fuse_pad_into_conv
from graphport.passes.shuffle import channel_shuffle_to_gather
from graphport.passes.specialise import fix_dims, fix_inputs

F32 = np.dtype(np.float32)
RNG = np.random.default_rng(0)


def _const(name: str, arr) -> Value:
    arr = np.asarray(arr)
    return Value(name, arr.dtype, arr.shape, arr)


def _graph(nodes: list[Node], values: list[Value], inputs: list[str], outputs: list[str], opset: int = 17) -> Graph:
    return Graph(nodes, {v.name: v for v in values}, inputs, outputs, opset)


def _run(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    model = helper.make_model(graph_proto(graph, "g"), opset_imports=[helper.make_opsetid("", graph.opset)])
    return ReferenceEvaluator(model).run(None, feeds)


def _check(run_pass, make: callable, feeds: dict[str, np.ndarray], atol: float = 1e-5) -> Graph:
    """Apply the pass to a fresh graph; it must report a change, lint, and equal the graph before."""
    want = _run(make(), feeds)
    result = run_pass(make())
    assert isinstance(result, PassResult) and result.modified
    result.graph.lint()
    for a, b in zip(want, _run(result.graph, feeds)):
        np.testing.assert_allclose(a, b, atol=atol)
    return result.graph


def _x(shape=(1, 2, 5, 5)) -> Value:
    return Value("x", F32, shape)


def test_dead_code_is_dropped_and_a_second_run_changes_nothing():
    def make():
        return _graph([Node("Relu", "relu", ["x"], ["y"]), Node("Sigmoid", "unused", ["x"], ["dead"])],
                      [_x(), Value("y", F32, (1, 2, 5, 5))], ["x"], ["y"])

    graph = _check(eliminate_dead_code, make, {"x": RNG.standard_normal((1, 2, 5, 5), np.float32)})
    assert [n.name for n in graph.nodes] == ["relu"] and "dead" not in graph.values
    assert not eliminate_dead_code(graph).modified


def test_batchnorm_folds_into_the_conv_before_it():
    def make():
        rng = np.random.default_rng(1)  # every call builds the same graph
        params = [_const(n, rng.uniform(0.5, 1.5, 3).astype(np.float32)) for n in ("s", "b", "m", "v")]
        return _graph([Node("Conv", "conv", ["x", "w", "cb"], ["c"], {"pads": [1, 1, 1, 1]}),
                       Node("BatchNormalization", "bn", ["c", "s", "b", "m", "v"], ["y"], {"epsilon": 1e-5})],
                      [_x(), _const("w", rng.standard_normal((3, 2, 3, 3), np.float32)),
                       _const("cb", rng.standard_normal(3).astype(np.float32)), *params], ["x"], ["y"])

    graph = _check(fold_batchnorm_into_conv, make, {"x": RNG.standard_normal((1, 2, 5, 5), np.float32)})
    assert [n.op_type for n in graph.nodes] == ["Conv"]


def test_a_zero_pad_becomes_the_convs_own_padding():
    def make():
        rng = np.random.default_rng(1)
        return _graph([Node("Pad", "pad", ["x", "pads"], ["p"], {"mode": "constant"}),
                       Node("Conv", "conv", ["p", "w"], ["y"], {"auto_pad": "NOTSET"})],
                      [_x(), _const("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
                       _const("w", rng.standard_normal((3, 2, 3, 3), np.float32))], ["x"], ["y"])

    graph = _check(fuse_pad_into_conv, make, {"x": RNG.standard_normal((1, 2, 5, 5), np.float32)})
    assert [n.op_type for n in graph.nodes] == ["Conv"] and graph.nodes[0].attrs["pads"] == [1, 2, 2, 1]


def test_a_channel_shuffle_becomes_one_gather():
    def make():
        return _graph([Node("Reshape", "split", ["x", "s1"], ["a"]),
                       Node("Transpose", "swap", ["a"], ["b"], {"perm": [0, 2, 1, 3, 4]}),
                       Node("Reshape", "merge", ["b", "s2"], ["y"])],
                      [_x((1, 6, 4, 4)), _const("s1", np.array([1, 2, 3, 4, 4], np.int64)),
                       _const("s2", np.array([1, 6, 4, 4], np.int64)), Value("a", F32, (1, 2, 3, 4, 4)),
                       Value("b", F32, (1, 3, 2, 4, 4)), Value("y", F32, (1, 6, 4, 4))], ["x"], ["y"])

    graph = _check(channel_shuffle_to_gather, make, {"x": RNG.standard_normal((1, 6, 4, 4), np.float32)})
    assert [n.op_type for n in graph.nodes] == ["Gather"]


def _branch(op_type: str) -> Graph:
    """A body that reads the outer `x` (ONNX scoping) and returns op(x)."""
    return _graph([Node(op_type, op_type.lower(), ["x"], ["out"])], [Value("out", F32, (2, 3))], [], ["out"])


def _if_graph(cond: Value) -> Graph:
    return _graph([Node("If", "if", ["c"], ["y"], {"then_branch": _branch("Relu"), "else_branch": _branch("Neg")})],
                  [_x((2, 3)), cond, Value("y", F32, (2, 3))], ["x"] + ([] if cond.const is not None else ["c"]),
                  ["y"])


def test_an_if_with_a_constant_condition_is_inlined():
    graph = _check(fold_if, lambda: _if_graph(_const("c", np.array(False))),
                   {"x": RNG.standard_normal((2, 3), np.float32)})
    assert [(n.op_type, n.name) for n in graph.nodes] == [("Neg", "if/else/neg")]


def test_a_loop_with_a_constant_trip_count_is_unrolled():
    def make():
        body = _graph([Node("Identity", "keep", ["cond_in"], ["cond_out"]), Node("Add", "step", ["s", "x"], ["s2"])],
                      [Value("i", np.dtype(np.int64), ()), Value("cond_in", np.dtype(bool), ()),
                       Value("s", F32, (2, 3)), Value("cond_out", np.dtype(bool), ()), Value("s2", F32, (2, 3))],
                      ["i", "cond_in", "s"], ["cond_out", "s2"])
        # an explicit condition: onnx's reference evaluator runs no iteration of a Loop whose cond input is empty
        return _graph([Node("Loop", "loop", ["trips", "go", "x"], ["y"], {"body": body})],
                      [_x((2, 3)), _const("trips", np.array(3, np.int64)), _const("go", np.array(True)),
                       Value("y", F32, (2, 3))], ["x"], ["y"])

    x = RNG.standard_normal((2, 3), np.float32)
    graph = _check(unroll_loops, make, {"x": x})
    assert "Loop" not in {n.op_type for n in graph.nodes}
    np.testing.assert_allclose(_run(graph, {"x": x})[0], 4 * x, rtol=1e-6)  # x + 3 steps of +x


def test_control_flow_that_stays_records_the_outer_values_it_reads_and_gets_folded_bodies():
    graph = _if_graph(Value("c", np.dtype(bool), ()))
    mark_implicit_inputs(graph)
    assert graph.nodes[0].implicit_inputs == ["x"]
    graph = fold_bodies(graph).graph
    then = graph.nodes[0].attrs["then_branch"]
    assert [n.name for n in then.nodes] == ["if/then/relu"] and "x" in then.values  # names scoped, outer visible
    graph.lint()
    assert not fold_bodies(_graph([Node("Relu", "r", ["x"], ["y"])], [_x()], ["x"], ["y"])).modified


def test_specialising_fixes_inputs_and_dims_on_a_copy():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time"])
    sr = helper.make_tensor_value_info("sr", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time"])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x, sr], [y]))
    before = model.SerializeToString()
    fixed = fix_dims(fix_inputs(model, {"sr": np.array([16000])}), {"time": 512})
    assert model.SerializeToString() == before
    assert [i.name for i in fixed.graph.input] == ["x"] and numpy_helper.to_array(fixed.graph.initializer[0]) == [16000]
    dims = fixed.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 512
    onnx.checker.check_model(fixed)


@pytest.mark.parametrize("broken, message", [
    ([Node("Relu", "r", ["nowhere"], ["y"])], "reads"),
    ([Node("Relu", "r", ["x"], ["y"]), Node("Neg", "n", ["x"], ["y"])], "defined already"),
    ([], "never defined"),
])
def test_lint_catches_a_broken_graph(broken, message):
    with pytest.raises(LintError, match=message):
        _graph(broken, [_x()], ["x"], ["y"]).lint()


def test_optimize_names_the_pass_that_broke_the_graph(monkeypatch):
    """Deliberately broken: a pass that drops the node an output needs is caught right after it runs."""
    def drop_everything(graph: Graph) -> PassResult:
        graph.nodes = []
        return PassResult(graph, True)

    monkeypatch.setattr("graphport.passes.PIPELINE", [*PIPELINE, drop_everything])
    with pytest.raises(LintError, match="after pass drop_everything"):
        optimize(_graph([Node("Relu", "r", ["x"], ["y"])], [_x()], ["x"], ["y"]), lint=True)
