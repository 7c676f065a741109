"""fold_channel_affine_into_conv: a per-channel constant Mul/Add after a Conv folds into its weights and bias.

Drawn by hypothesis: dense or depthwise convs, with or without bias, then one or two affine ops whose constant is
per channel (several spellings), a scalar, or not per channel (along a spatial axis, which must not fold), on
either side of the op. Each result is compared with ONNX's reference evaluator on the graph before the pass.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

from graphport.ir.graph import Graph, Node, Value
from graphport.ir.to_onnx import graph_proto
from graphport.passes.fuse import fold_channel_affine_into_conv

C = 4
SHAPES = {"c11": (C, 1, 1), "1c11": (1, C, 1, 1), "scalar": (), "one": (1,), "spatial": (1, 1, 1, 5), "w": (5,)}
PER_CHANNEL = {"c11", "1c11", "scalar", "one"}


def _run(graph: Graph, x: np.ndarray) -> np.ndarray:
    model = helper.make_model(graph_proto(graph, "g"), opset_imports=[helper.make_opsetid("", 17)])
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def _make(depthwise: bool, bias: bool, ops: list[tuple[str, str, bool]], seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    values = [Value("x", np.dtype(np.float32), (1, C, 5, 5))]
    w_shape = (C, 1, 3, 3) if depthwise else (C, C, 3, 3)
    values.append(Value("w", np.dtype(np.float32), w_shape, rng.standard_normal(w_shape).astype(np.float32)))
    inputs = ["x", "w"]
    if bias:
        values.append(Value("b", np.dtype(np.float32), (C,), rng.standard_normal(C).astype(np.float32)))
        inputs.append("b")
    nodes = [Node("Conv", "conv", inputs, ["t0"], {"pads": [1, 1, 1, 1], "group": C if depthwise else 1})]
    for i, (op, shape, const_first) in enumerate(ops):
        k = rng.uniform(0.5, 1.5, SHAPES[shape]).astype(np.float32)
        values.append(Value(f"k{i}", k.dtype, k.shape, k))
        args = [f"k{i}", f"t{i}"] if const_first else [f"t{i}", f"k{i}"]
        nodes.append(Node(op, f"{op}{i}", args, [f"t{i + 1}"]))
    for i in range(len(ops) + 1):
        values.append(Value(f"t{i}", np.dtype(np.float32), None))
    return Graph(nodes, {v.name: v for v in values}, ["x"], [f"t{len(ops)}"], 17)


@settings(max_examples=40, deadline=None)
@given(depthwise=st.booleans(), bias=st.booleans(), seed=st.integers(0, 1000),
       ops=st.lists(st.tuples(st.sampled_from(["Mul", "Add"]), st.sampled_from(sorted(SHAPES)), st.booleans()),
                    min_size=1, max_size=2))
def test_folds_exactly_the_per_channel_ops(depthwise, bias, seed, ops):
    x = np.random.default_rng(seed + 1).standard_normal((1, C, 5, 5)).astype(np.float32)
    want = _run(_make(depthwise, bias, ops, seed), x)
    result = fold_channel_affine_into_conv(_make(depthwise, bias, ops, seed))
    result.graph.lint()
    np.testing.assert_allclose(_run(result.graph, x), want, rtol=1e-5, atol=1e-5)
    foldable = 0
    for _, shape, _ in ops:  # ops fold from the conv outwards until the first that is not per channel
        if shape not in PER_CHANNEL:
            break
        foldable += 1
    assert [n.op_type for n in result.graph.nodes] == ["Conv"] + [op for op, _, _ in ops[foldable:]]
    assert result.modified == (foldable > 0)


def test_a_conv_output_used_twice_is_left_alone():
    g = _make(False, True, [("Mul", "c11", False)], 0)
    g.outputs.append("t0")  # the conv's own output is a graph output as well
    assert not fold_channel_affine_into_conv(g).modified
