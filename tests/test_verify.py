"""Verification: both oneDNN settings, crashes contained in workers, a tolerance that passes float-order noise but
fails real conversion errors (shown with deliberately broken emitters)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper

import graphport
from graphport.conversion.verify import compare
from graphport.emit.tf import build_graph_def
from graphport.emit.tf.linalg import matmul
from graphport.ir.from_onnx import load_model, to_ir
from graphport.passes import optimize
from graphport.runtime.isolated import GraphRunError, IsolatedGraph, KernelCrash

ONEDNN_FIXTURES = sorted((Path(__file__).parent / "regressions").glob("onednn_*.onnx"))


def _model(nodes, inputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _x(*shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


def _w(*shape, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ---- oneDNN: the fuzzer's crashing models ----------------------------------------------------------------------
@pytest.mark.parametrize("path", ONEDNN_FIXTURES, ids=[p.stem for p in ONEDNN_FIXTURES])
def test_onednn_fixtures_convert_and_verify_under_both_settings(path, tmp_path):
    """On AVX-512 CPUs TF 2.21 with oneDNN crashed (free(): invalid pointer) on the rank-4 x rank-3 BatchMatMulV2
    these used to emit; now it is a 2-D MatMul and both settings equal ORT."""
    report = graphport.convert(path, tmp_path / "out")
    assert report.ok, report.verification.failures
    assert {c.onednn for c in report.verification.checks} == {"off", "on"}
    assert all(c.max_abs <= 1e-5 for c in report.verification.checks)
    assert "BatchMatMulV2" not in report.tf_ops


@pytest.mark.parametrize("a_shape,b_shape", [
    (["N", 1, 9, 2], [1, 2, 5]), (["N", 4, 9, 2], [2, 5]), (["N", 4, 9, 2], [4, 2, 5]), ([1, 9, 2], ["N", 2, 5]),
    (["N", 4, 9, 2], ["N", 4, 2, 5]), ([2], ["N", 2, 5]), (["N", 9, 2], [2])])
def test_matmul_never_leaves_broadcasting_to_batchmatmul(a_shape, b_shape, tmp_path):
    """oneDNN's BatchMatMulV2 corrupts the heap when operand ranks differ (TF issue 117700): every BatchMatMulV2
    graphport emits has operands of one rank and equal batch dims, and the result still equals ORT."""
    const_b = "N" not in b_shape
    inputs = [_x(*a_shape)] + ([] if const_b else [helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape)])
    inits = {"b": _w(*b_shape)} if const_b else {}
    model = _model([helper.make_node("MatMul", ["x", "b"], ["y"])], inputs, inits)
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(build_graph_def(optimize(to_ir(load_model(model)[0]))).graph_def, name="")
    for op in (op for op in g.get_operations() if op.type == "BatchMatMulV2"):
        a, b = op.inputs
        assert a.shape.rank == b.shape.rank
        same = a.shape.as_list()[:-2] == b.shape.as_list()[:-2]  # None: the same ONNX symbol on both sides
        assert same or {a.op.type, b.op.type} == {"BroadcastTo"}, (a.shape, b.shape)
    report = graphport.convert(model, tmp_path / "out", batch_sizes=(1, 3))
    assert report.ok, report.verification


# ---- crashes become verification results -----------------------------------------------------------------------
def _crashing_matmul(ctx, node):
    """A stand-in for a kernel that crashes: TF's Abort op runs before the output is produced."""
    matmul(ctx, node)
    abort = tf.raw_ops.Abort(error_msg="stand-in for a crashing kernel")
    with tf.control_dependencies([abort]):
        ctx.set(node.outputs[0], tf.identity(ctx.raw(node.outputs[0])))


def _small_matmul() -> onnx.ModelProto:
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_x("N", 8)], {"w": _w(8, 8)})


def test_a_crashing_kernel_is_a_verification_failure_not_a_dead_converter(tmp_path, break_emitter):
    break_emitter("MatMul", _crashing_matmul)
    out = tmp_path / "out"
    report = graphport.convert(_small_matmul(), out, batch_sizes=(1, 3))
    assert not report.ok and not out.exists()
    failures = {f.onednn: f for f in report.verification.failures}
    assert set(failures) == {"off", "on"}
    assert all("SIGABRT" in f.message and f.batch == 1 and "running batch 1" in f.message for f in failures.values())
    assert "stand-in for a crashing kernel" in failures["on"].message


def test_cli_reports_a_crash_in_one_paragraph_and_exits_1(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(_small_matmul(), model)
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from graphport.emit.tf.registry import EMITTERS
from test_verify import _crashing_matmul
EMITTERS.override("MatMul", _crashing_matmul)
from graphport.cli import main
sys.exit(main(["convert", {str(model)!r}, "-o", {str(tmp_path / 'out')!r}, "--batch-sizes", "1,3"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    assert "oneDNN on:" in text and "oneDNN off:" in text and "SIGABRT" in text and "running batch 1" in text
    assert not (tmp_path / "out").exists()


def test_worker_restarts_after_a_crash():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        tf.identity(2 * x, name="double")
        with tf.control_dependencies([tf.raw_ops.Abort(error_msg="boom")]):
            tf.identity(x, name="dies")
    gd = g.as_graph_def()
    with pytest.raises(KernelCrash, match="SIGABRT.*boom"):
        IsolatedGraph(gd, {"x": "x"}, {"y": "dies"}, onednn=False).run({"x": np.ones((1, 2), np.float32)})
    y = IsolatedGraph(gd, {"x": "x"}, {"y": "double"}, onednn=False).run({"x": np.ones((1, 2), np.float32)})
    assert np.array_equal(y["y"], [[2.0, 2.0]])


# ---- the tolerance: float order passes, real errors fail ---------------------------------------------------------
def test_float_order_noise_on_large_outputs_is_not_a_failure(tmp_path, monkeypatch):
    """Large activations (convs, then a wide projection): the near-zero outputs among large ones carry float-order
    noise above atol + rtol*|ref|, and rows of batch 64 differ from batch 1 by more than the old absolute 1e-5.
    Neither is a conversion error; both fail without the floor that scales with the output."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "w3"], ["y"])]
    model = _model(nodes, [_x("N", 16, 32, 32)], {"w1": _w(64, 16, 3, 3, seed=1, scale=3.0),
                                                   "w2": _w(64, 64, 3, 3, seed=2, scale=3.0),
                                                   "w3": _w(64, 4096, seed=3, scale=3.0)})
    report = graphport.convert(model, tmp_path / "out", batch_sizes=(1, 3, 64))
    assert report.ok, report.verification
    assert report.verification.batch_invariance > 1e-5
    monkeypatch.setattr("graphport.conversion.verify.SCALE_RTOL", 0.0)
    monkeypatch.setattr("graphport.conversion.verify.NOISE_FACTOR", 0.0)
    strict = graphport.convert(model, tmp_path / "strict", batch_sizes=(1, 3, 64))
    assert not strict.ok, "without the floor this float-order noise fails: the case must carry some"


def _wrong_axis_softmax(ctx, node):
    ctx.set(node.outputs[0], tf.nn.softmax(ctx.onnx_order(node.inputs[0]), axis=0))


def _wrong_broadcast_add(ctx, node):
    a, b = ctx.onnx_order(node.inputs[0]), ctx.onnx_order(node.inputs[1])
    ctx.set(node.outputs[0], a + tf.reshape(b, [1, -1]))


def _transposed_weight_matmul(ctx, node):
    ctx.set(node.outputs[0], tf.matmul(ctx.onnx_order(node.inputs[0]), ctx.onnx_order(node.inputs[1]),
                                       transpose_b=True))


BROKEN = {
    "wrong axis": ("Softmax", _wrong_axis_softmax,
                   _model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [_x("N", 4, 6)])),
    "wrong broadcast": ("Add", _wrong_broadcast_add,
                        _model([helper.make_node("Add", ["x", "b"], ["y"])], [_x("N", 4, 4)], {"b": _w(4, 1)})),
    "transposed weight": ("MatMul", _transposed_weight_matmul, _small_matmul()),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_real_conversion_errors_still_fail(case, tmp_path, break_emitter):
    op_type, handler, model = BROKEN[case]
    assert graphport.convert(model, tmp_path / "good", batch_sizes=(1, 3)).ok
    break_emitter(op_type, handler)
    report = graphport.convert(model, tmp_path / "bad", batch_sizes=(1, 3))
    assert not report.ok
    failed = Counter((c.onednn, c.batch) for c in report.verification.checks if not c.ok)
    assert {s for s, _ in failed} == {"off", "on"}, "both settings must catch it against ORT"


def test_floor_is_relative_to_the_output_not_absolute():
    ref = np.array([1000.0, 1e-3], np.float32)
    noisy = ref + np.array([1e-3, 1e-3], np.float32)
    assert not compare(ref, noisy, 1e-4, 1e-3)[2]
    assert compare(ref, noisy, 1e-4, 1e-3, floor=1e-5 * 1000.0)[2]
    assert not compare(ref, ref[::-1].copy(), 1e-4, 1e-3, floor=1e-5 * 1000.0)[2]


def test_a_tf_error_is_reported_by_what_failed_and_where():
    """Eigen's depthwise kernel (oneDNN off) refuses unequal strides; the message keeps TF's reason and node."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 2], name="x")
        tf.raw_ops.DepthwiseConv2dNative(input=x, filter=tf.ones([1, 1, 2, 1]), strides=[1, 2, 1, 1],
                                         padding="VALID", name="dw")
    runner = IsolatedGraph(g.as_graph_def(), {"x": "x"}, {"y": "dw"}, onednn=False)
    with pytest.raises(GraphRunError, match="dw.*equal length strides|equal length strides.*dw"):
        runner.run({"x": np.ones((1, 8, 8, 2), np.float32)})
