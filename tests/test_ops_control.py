"""`If`, `Loop` and `Scan` deciding at run time (graphport/emit/tf/control_flow.py) against ONNX Runtime.

Each model is converted by `graphport.convert` (which verifies it against ONNX Runtime on seeded inputs) and then
run in TF on hand-picked inputs that take every branch and several trip counts and lengths, compared with ONNX
Runtime again. The graphs must be TF v1 control flow: Switch/Merge or Enter/Exit nodes, and no functions.
"""

from __future__ import annotations

import beyond_models as bm
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
import torch
from onnx import TensorProto, helper, numpy_helper
from ort_equal import assert_session_equals_ort
from tensorflow.core.framework import graph_pb2

import graphport
from graphport.emit.tf.registry import supported_ops
from graphport.passes import fix_inputs
from graphport.runtime import load

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

BATCHES = (1, 3)
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
FUNCTIONS = {"If", "StatelessIf", "While", "StatelessWhile", "PartitionedCall", "StatefulPartitionedCall"}


def _vi(name: str, elem: int, shape: list | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _model(nodes: list, inputs: list, outputs: list, inits: dict | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _converts_like_ort(model: onnx.ModelProto, tmp_path, feeds: list[dict], flow: set[str]) -> graphport.ConversionReport:
    """Convert with zero flags (verified by graphport at BATCHES), check the graph holds the v1 ops `flow` and no
    functions, then compare TF with ORT on each of `feeds`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    report = graphport.convert(path, tmp_path / "out", batch_sizes=BATCHES)
    assert report.ok, report.verification.to_json()
    gd = graph_pb2.GraphDef()
    gd.ParseFromString((tmp_path / "out" / "model.pb").read_bytes())
    ops = {n.op for n in gd.node}
    assert flow <= ops and not ops & FUNCTIONS and not gd.library.function, sorted(ops)
    assert_session_equals_ort(path, tmp_path / "out", feeds, atol=1e-5)
    return report


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_registry_claims_control_flow():
    assert {"If", "Loop", "Scan"} <= set(supported_ops())


# ---- If ----------------------------------------------------------------------------------------------------------
def _if_model() -> onnx.ModelProto:
    """Conv -> If(ReduceSum(x) > 0) -> Conv. The then-branch convolves again (it works channels-last inside), the
    else-branch returns Sigmoid of the outer value; a second output passes an outer value or a branch constant
    straight through. The values entering and leaving the branches are channels-last in the outer graph."""
    rng = _rng(1)
    w1, w2, w3 = (rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((4, 3, 3, 3), (4, 4, 3, 3), (2, 4, 1, 1)))
    then = helper.make_graph(
        [helper.make_node("Conv", ["h", "w2"], ["t0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["t0"], ["t1"]),
         helper.make_node("Identity", ["s"], ["t2"])],
        "then", [], [_vi("t1", F, None), _vi("t2", F, None)], [numpy_helper.from_array(w2, "w2")])
    other = helper.make_graph([helper.make_node("Sigmoid", ["h"], ["e1"]), _const("e2", np.float32(-1.0))],
                              "else", [], [_vi("e1", F, None), _vi("e2", F, None)])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             _const("zero", np.float32(0)),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["b", "k"], then_branch=then, else_branch=other),
             helper.make_node("Conv", ["b", "w3"], ["y"])]
    return _model(nodes, [_vi("x", F, ["batch", 3, 6, 5])], [_vi("y", F, ["batch", 2, 6, 5]), _vi("k", F, [])],
                  {"w1": w1, "w3": w3})


def test_if_on_a_runtime_condition(tmp_path):
    x = _rng(2).standard_normal((2, 3, 6, 5)).astype(np.float32)
    feeds = [{"x": np.abs(x)}, {"x": -np.abs(x)}, {"x": np.abs(x[:1])}]
    report = _converts_like_ort(_if_model(), tmp_path, feeds, {"Switch", "Merge"})
    assert any("If" in w and "runs as TF v1 control flow" in w for w in report.warnings), report.warnings


def test_if_with_swapped_branches_fails_verification(tmp_path, break_emitter):
    """Guard: the check above catches an If that takes the wrong branch."""
    from graphport.emit.tf import control_flow

    def swapped(ctx, node):
        node.attrs["then_branch"], node.attrs["else_branch"] = node.attrs["else_branch"], node.attrs["then_branch"]
        control_flow.if_(ctx, node)

    break_emitter("If", swapped)
    model = _if_model()
    for out in model.graph.output[1:]:  # only the data output: the constant one differs in shape as well
        model.graph.output.remove(out)
    report = graphport.convert(model, tmp_path / "out", batch_sizes=BATCHES)
    assert not report.ok


def test_if_on_an_input_value_runs_both_branches(tmp_path):
    """The VAD-style model (an LSTM in the then-branch) converts unpinned; pinning `sr` still folds it flat."""
    feeds = [{"x": _rng(3).standard_normal((2, 5, 4)).astype(np.float32), "sr": np.array(rate, np.int64)}
             for rate in (16000, 8000)]
    report = _converts_like_ort(bm.vad_model(), tmp_path / "cf", feeds, {"Switch", "Merge"})
    assert any("--fix-input sr=VALUE" in w for w in report.warnings), report.warnings
    flat = graphport.convert(fix_inputs(bm.vad_model(), {"sr": np.array(8000)}), tmp_path / "flat", batch_sizes=BATCHES)
    assert flat.ok and not {"Switch", "Merge"} & set(flat.tf_ops)


# ---- Loop --------------------------------------------------------------------------------------------------------
def _rnn_loop_model() -> onnx.ModelProto:
    """A hand-written RNN: M = x.shape[1] (a symbolic dim), h <- tanh(h @ R + x[:, i] @ W), every h a scan output,
    transposed to [batch, T, 3]; cond is absent (a for loop)."""
    rng = _rng(4)
    w, r = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 3)).astype(np.float32) * 0.5
    body = helper.make_graph(
        [helper.make_node("Gather", ["x", "i"], ["xi"], axis=1), helper.make_node("MatMul", ["xi", "w"], ["a"]),
         helper.make_node("MatMul", ["h_in", "r"], ["b"]), helper.make_node("Add", ["a", "b"], ["pre"]),
         helper.make_node("Tanh", ["pre"], ["h_out"]), helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Identity", ["h_out"], ["y_i"])],
        "body", [_vi("i", I64, []), _vi("c_in", BOOL, []), _vi("h_in", F, ["batch", 3])],
        [_vi("c_out", BOOL, []), _vi("h_out", F, ["batch", 3]), _vi("y_i", F, ["batch", 3])])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), _const("one", np.array(1, np.int64)),
             helper.make_node("Gather", ["shape", "one"], ["steps"], axis=0),
             helper.make_node("Loop", ["steps", "", "h0"], ["h", "ys"], body=body),
             helper.make_node("Transpose", ["ys"], ["y"], perm=[1, 0, 2])]
    return _model(nodes, [_vi("x", F, ["batch", "T", 4]), _vi("h0", F, ["batch", 3])],
                  [_vi("h", F, ["batch", 3]), _vi("y", F, ["batch", "T", 3])], {"w": w, "r": r})


def test_loop_over_a_runtime_length(tmp_path):
    rng = _rng(5)
    feeds = [{"x": rng.standard_normal((2, t, 4)).astype(np.float32), "h0": rng.standard_normal((2, 3)).astype(
        np.float32)} for t in (1, 7, 30)]
    report = _converts_like_ort(_rnn_loop_model(), tmp_path, feeds, {"Enter", "Exit", "LoopCond", "TensorArrayV3"})
    assert any("--fix-dim T=SIZE" in w for w in report.warnings), report.warnings


def test_loop_on_an_input_trip_count(tmp_path):
    """The scripted-`for` Loop with its trip count fed as an input; zero trips leave the state as it came in."""
    x = _rng(6).standard_normal((3, 4)).astype(np.float32)
    feeds = [{"x": x, "n": np.array(n, np.int64)} for n in (1, 4, 9)]
    report = _converts_like_ort(bm.loop_model(None), tmp_path, feeds, {"Enter", "Exit", "LoopCond"})
    assert any("--fix-input n=VALUE" in w for w in report.warnings), report.warnings
    session = load(tmp_path / "out", backend="session")
    try:
        out = session.run({"x": x, "n": np.array(0, np.int64)})
    finally:
        session.close()
    np.testing.assert_array_equal(out["h"], x)


def _while_model() -> onnx.ModelProto:
    """A data-dependent while loop (no trip count): h <- 2h + 1 and k <- k + 1 while sum|h| < limit, the condition
    computed in the body and, for the first test, outside it."""
    body = helper.make_graph(
        [_const("two", np.float32(2)), _const("one_f", np.float32(1)), _const("one_i", np.int64(1)),
         helper.make_node("Mul", ["h_in", "two"], ["h2"]), helper.make_node("Add", ["h2", "one_f"], ["h_out"]),
         helper.make_node("Add", ["k_in", "one_i"], ["k_out"]), helper.make_node("Abs", ["h_out"], ["ab"]),
         helper.make_node("ReduceSum", ["ab"], ["tot"], keepdims=0),
         helper.make_node("Less", ["tot", "limit"], ["c_out"])],
        "body", [_vi("i", I64, []), _vi("c_in", BOOL, []), _vi("h_in", F, ["batch", 4]), _vi("k_in", I64, [])],
        [_vi("c_out", BOOL, []), _vi("h_out", F, ["batch", 4]), _vi("k_out", I64, [])])
    nodes = [helper.make_node("Abs", ["x"], ["ax"]), helper.make_node("ReduceSum", ["ax"], ["s0"], keepdims=0),
             helper.make_node("Less", ["s0", "limit"], ["c0"]), _const("k0", np.int64(0)),
             helper.make_node("Loop", ["", "c0", "x", "k0"], ["h", "k"], body=body)]
    return _model(nodes, [_vi("x", F, ["batch", 4]), _vi("limit", F, [])],
                  [_vi("h", F, ["batch", 4]), _vi("k", I64, [])])


def test_loop_with_a_data_dependent_condition(tmp_path):
    x = _rng(7).standard_normal((2, 4)).astype(np.float32)
    feeds = [{"x": x, "limit": np.array(v, np.float32)} for v in (0.5, 100.0, 1e5)]
    _converts_like_ort(_while_model(), tmp_path, feeds, {"Enter", "Exit", "LoopCond"})


def _gate_model() -> onnx.ModelProto:
    """One input, one output, for Essentia: the RNN Loop over the runtime length T, then If(sum(h) > 0) choosing
    2h or sigmoid(h) - 1."""
    model = _rnn_loop_model()
    then = helper.make_graph([_const("two", np.float32(2)), helper.make_node("Mul", ["h", "two"], ["g1"])], "then",
                             [], [_vi("g1", F, ["batch", 3])])
    other = helper.make_graph([helper.make_node("Sigmoid", ["h"], ["s1"]), _const("one_f", np.float32(1)),
                               helper.make_node("Sub", ["s1", "one_f"], ["g2"])], "else", [], [_vi("g2", F, ["batch", 3])])
    nodes = [helper.make_node("ConstantOfShape", ["h0_shape"], ["h0"]), *model.graph.node[:4],
             helper.make_node("ReduceSum", ["h"], ["total"], keepdims=0), _const("zero", np.float32(0)),
             helper.make_node("Greater", ["total", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["gate"], then_branch=then, else_branch=other)]
    nodes.insert(0, helper.make_node("Shape", ["x"], ["x_shape"], end=1))
    nodes.insert(1, _const("three", np.array([3], np.int64)))
    nodes.insert(2, helper.make_node("Concat", ["x_shape", "three"], ["h0_shape"], axis=0))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return _model(nodes, [_vi("x", F, ["batch", "T", 4])], [_vi("gate", F, ["batch", 3])], inits)


def test_runtime_if_and_loop_load_at_once_in_essentia(tmp_path):
    """Essentia's libtensorflow 2.5 loads the v1 cond and while loop from model.pb and runs them at any length."""
    from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

    x = _rng(11).standard_normal((3, 40, 4)).astype(np.float32)
    batches = [x[:1, :7], x, 3 * x[:2, :2], -3 * x[:2, :2]]  # T >= 2: Essentia squeezes size-1 dims
    report = _converts_like_ort(_gate_model(), tmp_path, [{"x": b} for b in batches],
                                {"Switch", "Merge", "Enter", "Exit"})
    ref = ort.InferenceSession(_gate_model().SerializeToString(), providers=["CPUExecutionProvider"])
    want = [ref.run(None, {"x": b})[0] for b in batches]
    assert {bool(w.sum() > 0) for w in want[2:]} == {True, False}  # both branches taken
    model, inp, outp = artifact_names(tmp_path / "out", "pb")
    result = essentia_run(model, inp, outp, batches, 300.0, python=ensure_essentia_python())
    assert result["ok"], result.get("error")
    assert result["load_s"] <= 0.2, f"Essentia load took {result['load_s']:.3f} s"
    for got, w in zip(result["outputs"], want):
        np.testing.assert_allclose(got.reshape(w.shape), w, rtol=1e-5, atol=1e-5)
    print(f"Essentia: load {1e3 * result['load_s']:.1f} ms, steady {[round(1e3 * t, 2) for t in result['steady_s']]} ms,"
          f" {sum(report.tf_ops.values())} TF nodes")


# ---- Scan --------------------------------------------------------------------------------------------------------
def _scan_model(in_dir: int, out_dir: int, out_axis: int) -> onnx.ModelProto:
    """An exponential moving average over axis 1 of x [batch, T, 4] (scan_input_axes=[1]): s <- 0.9 s + x_t,
    scan output tanh(s) at `out_axis` in direction `out_dir`."""
    body = helper.make_graph(
        [_const("decay", np.float32(0.9)), helper.make_node("Mul", ["s_in", "decay"], ["m"]),
         helper.make_node("Add", ["m", "x_t"], ["s_out"]), helper.make_node("Tanh", ["s_out"], ["y_t"])],
        "body", [_vi("s_in", F, ["batch", 4]), _vi("x_t", F, ["batch", 4])],
        [_vi("s_out", F, ["batch", 4]), _vi("y_t", F, ["batch", 4])])
    node = helper.make_node("Scan", ["s0", "x"], ["s", "y"], body=body, num_scan_inputs=1, scan_input_axes=[1],
                            scan_input_directions=[in_dir], scan_output_axes=[out_axis],
                            scan_output_directions=[out_dir])
    y_shape = ["batch", "T", 4] if out_axis in (1, -2) else ["T", "batch", 4]
    return _model([node], [_vi("s0", F, ["batch", 4]), _vi("x", F, ["batch", "T", 4])],
                  [_vi("s", F, ["batch", 4]), _vi("y", F, y_shape)])


@pytest.mark.parametrize("in_dir, out_dir, out_axis", [(0, 0, 0), (1, 0, 1), (0, 1, -2), (1, 1, 0)])
def test_scan_over_a_runtime_length(tmp_path, in_dir, out_dir, out_axis):
    rng = _rng(8)
    feeds = [{"s0": rng.standard_normal((2, 4)).astype(np.float32),
              "x": rng.standard_normal((2, t, 4)).astype(np.float32)} for t in (1, 5, 12)]
    _converts_like_ort(_scan_model(in_dir, out_dir, out_axis), tmp_path, feeds, {"Enter", "Exit", "TensorArrayV3"})


# ---- torch -------------------------------------------------------------------------------------------------------
class Gate(torch.nn.Module):
    """A data-dependent `if` and a `for` over the input's length, scripted so that they export as If and Loop."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(x[:, 0])
        for t in range(x.shape[1]):
            h = torch.tanh(self.proj(x[:, t]) + 0.5 * h)
        if bool(h.sum() > 0):
            out = h * 2.0
        else:
            out = torch.sigmoid(h) - 1.0
        return out


def _torch_model(path) -> None:
    torch.manual_seed(0)
    module = torch.jit.script(Gate().eval())
    torch.onnx.export(module, (torch.randn(2, 5, 4),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch", 1: "T"}}, opset_version=17, dynamo=False)


def test_torch_scripted_if_and_loop(tmp_path):
    try:
        _torch_model(tmp_path / "src.onnx")
    except Exception as e:  # noqa: BLE001  the TorchScript exporter is deprecated in newer torch
        pytest.skip(f"torch cannot export a scripted module here: {e}")
    model = onnx.load(tmp_path / "src.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert {"If", "Loop"} <= ops, ops
    rng = _rng(9)
    feeds = [{"x": (s * rng.standard_normal((b, t, 4))).astype(np.float32)} for b, t, s in
             ((2, 5, 1.0), (3, 1, 3.0), (1, 11, -3.0))]
    _converts_like_ort(model, tmp_path, feeds, {"Switch", "Merge", "Enter", "Exit"})


def test_v1_loops_survive_a_tf1_saved_model(tmp_path):
    """The SavedModel of a graph with v1 control flow is the TF1 form, which TF2 serves through its signature."""
    graphport.convert(_while_model(), tmp_path / "out", batch_sizes=BATCHES)
    fn = tf.saved_model.load(str(tmp_path / "out" / "saved_model")).signatures["serving_default"]
    x = _rng(10).standard_normal((2, 4)).astype(np.float32)
    got = {k: v.numpy() for k, v in fn(x=tf.constant(x), limit=tf.constant(np.array(50, np.float32))).items()}
    want = ort.InferenceSession(_while_model().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "limit": np.array(50, np.float32)})
    np.testing.assert_allclose(got["h"], want[0], rtol=1e-6)
    assert got["k"] == want[1]
