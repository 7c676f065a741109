"""The converter core on the bundled example: artifacts, names, equality with ONNX Runtime, atomic output."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf

import graphport
from graphport.conversion.bundled_example import EXAMPLE

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "out"
    before = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    report = graphport.convert(EXAMPLE, out)
    assert hashlib.sha256(EXAMPLE.read_bytes()).hexdigest() == before, "the input .onnx must never be modified"
    return report, out


def _ort(x):
    return ort.InferenceSession(str(EXAMPLE), providers=["CPUExecutionProvider"]).run(None, {"melspectrogram": x})[0]


def test_report_and_flat_graph(converted):
    report, out = converted
    assert report.ok and report.out_dir == out.absolute()
    assert report.transposes == 0
    ops = report.tf_ops
    assert ops["DepthwiseConv2dNative"] >= 7
    for banned in ("PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While", "VarHandleOp",
                   "Transpose", "Pack", "Range", "SplitV", "Shape"):
        assert banned not in ops
    assert {c.batch for c in report.verification.checks} == {1, 3, 64}
    assert all(c.max_abs <= 1e-4 for c in report.verification.checks)
    assert report.verification.batch_invariance <= 1e-5


def test_pb_names_and_outputs_equal_ort(converted):
    _, out = converted
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    names = {n.name: n for n in gd.node}
    assert names["melspectrogram"].op == "Placeholder" and names["output_0"].op == "Identity"
    assert not gd.library.function
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        for b in (1, 5):
            x = np.random.default_rng(b).standard_normal((b, 128, 96)).astype(np.float32)
            y = sess.run("output_0:0", {"melspectrogram:0": x})
            assert np.abs(y - _ort(x)).max() <= 1e-4
            assert y.std(axis=0).max() > 1e-3 or b == 1  # outputs depend on the input


def test_metadata(converted):
    _, out = converted
    meta = json.loads((out / "model.json").read_text())
    (inp,), (outp,) = meta["inputs"], meta["outputs"]
    assert inp["shape"] == ["batch", 128, 96] and inp["dtype"] == "float32"
    assert inp["pb"]["tensor"] == "melspectrogram:0"
    assert inp["saved_model"]["tensor"] == "serving_default_melspectrogram:0"
    assert outp["pb"]["tensor"] == "output_0:0" and outp["saved_model"]["tensor"].endswith("PartitionedCall:0")
    assert meta["source"]["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert meta["verification"]["ok"] and meta["graphport_version"] == graphport.__version__


@pytest.mark.parametrize("script", ["seed_tf2_load.py", "seed_v1_load.py"])
def test_saved_model_works_with_seed_scripts(converted, script):
    _, out = converted
    run = subprocess.run([sys.executable, str(DATA / script), str(out / "saved_model")], check=False, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "inference time" in run.stdout


def test_saved_model_tf2_equals_ort(converted):
    _, out = converted
    m = tf.saved_model.load(str(out / "saved_model"))
    x = np.random.default_rng(7).standard_normal((3, 128, 96)).astype(np.float32)
    y = m(melspectrogram=x)["output_0"].numpy()
    assert np.abs(y - _ort(x)).max() <= 1e-4
    assert not m.signatures["serving_default"].variables


def test_failed_verification_leaves_outdir_untouched(tmp_path, break_emitter):
    from graphport.emit.tf.linalg import gemm

    def gemm_with_permuted_weight_rows(ctx, node):
        gemm(ctx, node)
        ctx.set(node.outputs[0], tf.reverse(ctx.raw(node.outputs[0]), [-1]))

    break_emitter("Gemm", gemm_with_permuted_weight_rows)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    report = graphport.convert(EXAMPLE, out, force=True, batch_sizes=(1, 3), keep_failed=True)
    assert not report.ok
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    failed = tmp_path / "out.failed"
    assert {p.name for p in failed.iterdir()} == {"model.pb", "model.json", "model.essentia.json", "saved_model"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp dirs left behind"


def test_force_replaces_whole_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    assert graphport.convert(EXAMPLE, out, force=True, verify_outputs=False).out_dir
    assert sorted(p.name for p in out.iterdir()) == ["model.essentia.json", "model.json", "model.pb", "saved_model"]


def test_output_moved_aside_by_a_killed_run_is_restored(tmp_path):
    """A run killed between moving the old output aside and renaming the new one in leaves `.out.old-*/x`."""
    aside = tmp_path / ".out.old-abc123" / "x"
    aside.mkdir(parents=True)
    (aside / "keep.txt").write_text("earlier output")
    (tmp_path / ".out.tmp-dead").mkdir()
    with pytest.raises(graphport.GraphportError, match="already exists"):
        graphport.convert(EXAMPLE, tmp_path / "out", verify_outputs=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "earlier output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _branching_model(path):
    """y = If(sr == 16000, Relu(x), Neg(x)): control flow on a model input, as voice-activity models do."""
    from onnx import TensorProto, helper, numpy_helper

    def branch(name, op):
        out = helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, ["batch", 4])
        return helper.make_graph([helper.make_node(op, ["x"], [f"{name}_y"])], name, [], [out])

    nodes = [helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["y"], name="pick_rate", then_branch=branch("then", "Relu"),
                              else_branch=branch("else", "Neg"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
                                           helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(np.array(16000, np.int64), "rate")])
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(onnx_model.SerializeToString())


def test_fix_input_folds_control_flow(tmp_path, capsys):
    from graphport.cli import main

    _branching_model(tmp_path / "vad.onnx")
    assert main(["convert", str(tmp_path / "vad.onnx"), "-o", str(tmp_path / "a"), "--batch-sizes", "1,3"]) == 0
    msg = " ".join(capsys.readouterr().out.split())  # unpinned it runs as v1 control flow, with a hint
    assert "pick_rate" in msg and "sr" in msg and "--fix-input" in msg
    assert main(["convert", str(tmp_path / "vad.onnx"), "-o", str(tmp_path / "b"), "--fix-input", "sr=16000"]) == 0
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((tmp_path / "b" / "model.pb").read_bytes())
    ops = {n.op for n in gd.node}
    assert "Relu" in ops and not ops & {"If", "StatelessIf", "Neg"}
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert [i["name"] for i in meta["inputs"]] == ["x"] and "batch_dependencies" in meta
    assert main(["convert", str(tmp_path / "vad.onnx"), "-o", str(tmp_path / "c"), "--fix-input", "rate"]) == 2
