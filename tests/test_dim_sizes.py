"""Verification sizes come from the graph: the smallest length at which every intermediate dim is >= 1 and every
conv and pool window fits, then a larger one that no stride divides; a size ONNX Runtime refuses is not a verdict.

Each expectation is checked independently of graphport's IR: ONNX's own shape inference at concrete sizes says
whether every dim is >= 1, and ONNX Runtime runs the converted graph's reference.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, shape_inference

import graphport
from graphport.cli import main
from graphport.conversion.dim_sizes import plan_sizes
from graphport.conversion.verify import input_specs
from graphport.core.errors import GraphportError
from graphport.ir.from_onnx import to_ir
from graphport.ir.size_bounds import Bound, smallest
from graphport.ir.symbolic import Atom, Sym
from graphport.passes import optimize

RNG = np.random.default_rng(3)
WINDOWED = {"Conv", "MaxPool", "AveragePool"}


def _weights(name: str, shape: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, shape, RNG.standard_normal(int(np.prod(shape))) * 0.3)


def _raw_wave_model(ceil_mode: int = 0) -> onnx.ModelProto:
    """[batch, 1, samples] -> strided Conv (10, /5) -> LeakyRelu -> dilated strided Conv (3, /2, dilation 2) ->
    MaxPool (4, /4) -> padded dilated Conv (3, dilation 3, pads 2) -> mean over time: a length where the pool sees
    fewer than 4 frames runs in ORT and returns NaN (the mean of nothing), which is what sizing must avoid."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[5]),
             helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], strides=[2], dilations=[2]),
             helper.make_node("MaxPool", ["c2"], ["p"], kernel_shape=[4], strides=[4], ceil_mode=ceil_mode),
             helper.make_node("Conv", ["p", "w3"], ["c3"], dilations=[3], pads=[2, 2]),
             helper.make_node("ReduceMean", ["c3"], ["y"], axes=[2], keepdims=0)]
    graph = helper.make_graph(nodes, "raw", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            ["batch", 1, "samples"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])],
                              [_weights("w1", [4, 1, 10]), _weights("w2", [6, 4, 3]), _weights("w3", [6, 6, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _every_dim_fits(model: onnx.ModelProto, sizes: dict[str, int]) -> bool:
    """ONNX's own inference at concrete sizes: every dim >= 1, every conv/pool input at least its window."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for d in m.graph.input[0].type.tensor_type.shape.dim:
        if d.dim_param:
            d.dim_value = 1 if d.dim_param == "batch" else sizes[d.dim_param]
    try:
        inferred = shape_inference.infer_shapes(m, strict_mode=True)
    except Exception:  # noqa: BLE001  inference refusing the size (a negative dim) is the answer
        return False
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    shapes.update({t.name: list(t.dims) for t in inferred.graph.initializer})
    if any(d < 1 for s in shapes.values() for d in s):
        return False
    for n in inferred.graph.node:
        if n.op_type in WINDOWED:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            kernel = attrs.get("kernel_shape") or shapes[n.input[1]][2:]
            dil, pads = attrs.get("dilations", [1] * len(kernel)), attrs.get("pads", [0] * 2 * len(kernel))
            for i, size in enumerate(shapes[n.input[0]][2:]):
                if size + pads[i] + pads[i + len(kernel)] < (kernel[i] - 1) * dil[i] + 1:
                    return False
    return True


def _plan(model: onnx.ModelProto, overrides=None):
    graph = optimize(to_ir(model))
    return plan_sizes(model.SerializeToString(), graph, input_specs(graph), overrides)


@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_first_size_is_the_smallest_where_every_dim_fits(ceil_mode):
    model = _raw_wave_model(ceil_mode)
    plan = _plan(model)
    first, second = (s["samples"] for s in plan.sizes)
    assert _every_dim_fits(model, {"samples": first}) and not _every_dim_fits(model, {"samples": first - 1})
    assert second > first and all(second % s for s in (2, 4, 5))  # no stride divides it
    assert "smallest size" in plan.reasons[0]["samples"] and "strides 2, 4, 5" in plan.reasons[1]["samples"]


def test_below_the_first_size_the_reference_is_no_reference():
    """Without the last conv, the pool bounds the length. One sample less and the 4-wide pool window no longer fits
    its 3 frames, yet ORT still runs and pools one frame out of them (its output size truncates -1/4 to 0, where
    ONNX floors it to -1): a result no TF kernel computes, and where oneDNN fails to build its pooling primitive.
    The old probe accepted any size with non-empty outputs and verified such a model there: every row FAIL."""
    model = _raw_wave_model()
    del model.graph.node[4]
    model.graph.node[4].input[0] = "p"
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 6
    model.graph.output.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, None))
    first = _plan(model).sizes[0]["samples"]
    assert _every_dim_fits(model, {"samples": first}) and not _every_dim_fits(model, {"samples": first - 1})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pooled = sess.run(["p"], {"x": RNG.standard_normal((1, 1, first - 1)).astype(np.float32)})[0]
    assert pooled.shape == (1, 6, 1)


def test_sizes_and_reasons_reach_the_table_and_model_json(tmp_path, capsys):
    path = tmp_path / "raw.onnx"
    onnx.save(_raw_wave_model(), path)
    before = path.read_bytes()
    assert main(["convert", str(path), "-o", str(tmp_path / "out"), "--batch-sizes", "1,3"]) == 0
    assert path.read_bytes() == before
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    sizes, reasons = meta["verified_dim_sizes"], meta["verified_dim_reasons"]
    assert len(sizes) == len(reasons) == 2
    for s, r in zip(sizes, reasons):
        assert f"verified at samples={s['samples']}: {r['samples'][:30]}" in " ".join(out.split())


def test_the_converted_graph_equals_ort_at_realistic_lengths(tmp_path):
    """The sizes verification picked are small; the graph must hold at lengths users feed (1 s and 1.5 s)."""
    from graphport.runtime import load

    model = _raw_wave_model(ceil_mode=1)
    assert graphport.convert(model, tmp_path / "out", batch_sizes=(1, 2)).ok
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    tf_sess = load(tmp_path / "out", backend="session")
    try:
        for n in (16000, 16001, 24003):  # every remainder of ceil_mode's last window
            x = RNG.standard_normal((2, 1, n)).astype(np.float32)
            np.testing.assert_allclose(tf_sess.run({"x": x})["y"], sess.run(None, {"x": x})[0], atol=1e-4, rtol=1e-3)
    finally:
        tf_sess.close()


def _ceil_pool_model(kernel: int, stride: int, pads: list[int]) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel], strides=[stride], pads=pads, ceil_mode=1)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kernel, stride, pads", [(3, 3, [1, 1]), (2, 2, [0, 0]), (3, 2, [1, 1]), (5, 3, [2, 2])])
def test_ceil_mode_max_pool_over_a_dynamic_length_equals_ort_at_every_remainder(tmp_path, kernel, stride, pads):
    """ceil_mode's extra window, and ORT's rule that drops it when it would start in the end padding (3/3 pads 1
    drops it at some remainders and not at others), computed at run time."""
    from graphport.runtime import load

    model = _ceil_pool_model(kernel, stride, pads)
    assert graphport.convert(model, tmp_path / "out", batch_sizes=(1, 2)).ok
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    tf_sess = load(tmp_path / "out", backend="session")
    try:
        for n in range(kernel, kernel + 3 * stride + 1):
            x = RNG.standard_normal((2, 2, n)).astype(np.float32)
            want = sess.run(None, {"x": x})[0]
            got = tf_sess.run({"x": x})["y"]
            assert got.shape == want.shape and np.array_equal(got, want), n
    finally:
        tf_sess.close()


def _reshape_model() -> onnx.ModelProto:
    """[batch, length] -> Reshape [batch, -1, 4]: ORT refuses every length that 4 does not divide, which no shape
    in the graph shows (the product is not divisible symbolically)."""
    nodes = [helper.make_node("Reshape", ["x", "to"], ["r"]), helper.make_node("ReduceSum", ["r"], ["y"], keepdims=0)]
    graph = helper.make_graph(nodes, "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                              [helper.make_tensor("to", TensorProto.INT64, [3], [0, -1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_size_the_reference_refuses_is_not_a_verdict():
    plan = _plan(_reshape_model())
    first = plan.sizes[0]["length"]
    assert first % 4 == 0 and "ONNX Runtime refuses length=1" in plan.reasons[0]["length"]
    assert plan.sizes[1]["length"] % 4 == 0 and plan.sizes[1]["length"] != first


def test_verify_dim_still_chooses():
    plan = _plan(_raw_wave_model(), {"samples": (16000, 24000)})
    assert [s["samples"] for s in plan.sizes] == [16000, 24000]
    assert plan.reasons[0]["samples"] == "chosen with --verify-dim"


def test_a_dim_the_graph_bounds_at_no_size_is_named(monkeypatch):
    samples = Sym.atom(Atom("samples", source="x", axis=2))
    impossible = Bound(1 - samples, "Pad_7", "Pad", "dim", frozenset(["samples"]))
    assert smallest("samples", [impossible], {"batch": 1}) == (None, impossible)
    monkeypatch.setattr("graphport.conversion.dim_sizes.bounds", lambda graph: [impossible])
    with pytest.raises(GraphportError, match=r"'samples' cannot be sized from the graph.*Pad 'Pad_7'.*--verify-dim"):
        _plan(_raw_wave_model())


def test_smallest_bisects_to_the_exact_bound():
    t = Sym.atom(Atom("t", source="x", axis=1))
    front = Bound((t - 400) // 320 + 1, "conv", "Conv", "dim", frozenset(["t"]))
    assert smallest("t", [front], {}) == (400, front)
    two = Bound(((t - 400) // 320 - 3) // 2 + 1, "conv2", "Conv", "dim", frozenset(["t"]))
    assert smallest("t", [front, two], {})[0] == 400 + 320 * 3
