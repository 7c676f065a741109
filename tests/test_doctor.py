"""`graphport doctor` on the mini onnx-tf fixture (117 s in Essentia: never loaded there), its --fix, bad input."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from rich.console import Console

from graphport.cli import build_parser
from graphport.core.errors import DoctorError, GraphportError
from graphport.doctor import diagnose, doctor_flags
from graphport.doctor.fix import flatten, write
from graphport.runtime.tf_model import load

MINI = Path(__file__).parent / "data" / "mini_onnxtf_dynamic_savedmodel"
EXAMPLE = Path(__file__).parents[1] / "graphport" / "examples" / "example_effnet.onnx"
FLAT_FORBIDDEN = {"PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While", "StatelessWhile",
                  "Switch", "Merge"}


def _doctor(*argv: str) -> int:
    """The doctor command as the CLI parses it, letting its errors propagate (main()'s exit codes for them are
    tested in test_cli_main.py)."""
    args = build_parser().parse_args(["doctor", *argv])
    return args.run(args, Console())


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    before = _digest(MINI)
    out = tmp_path_factory.mktemp("doctor") / "mini_fixed"
    rc = _doctor(str(MINI), "--fix", "-o", str(out))
    assert rc == 0 and _digest(MINI) == before
    return out


def test_analysis_names_the_chains_and_predicts_a_slow_old_load():
    a, risk = diagnose(load(MINI))
    chains = a.chains()
    assert chains["Range→SplitV→Mean"] == 8
    assert chains["Transpose→Cast→PadV2 (in tf.cond branch)"] == 8
    assert sorted({op for _, _, op in a.control_flow}) == ["StatelessIf"] and len(a.control_flow) == 8
    assert max(a.functions.values()) >= 2 and a.weight_args > 0
    assert risk.old_level == "high" and 50 < risk.old_seconds < 250  # measured: 117 s in Essentia
    assert risk.chain_runs["Range→SplitV→Mean"] == 8 * risk.inferences
    assert risk.new_level == "low"


def test_fix_is_flat_and_equal_at_every_batch(fixed):
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((fixed / "model.pb").read_bytes())
    assert not gd.library.function and not {n.op for n in gd.node} & FLAT_FORBIDDEN
    assert {n.op for n in gd.node if n.name == "melspectrogram"} == {"Placeholder"}
    assert doctor_flags(fixed / "model.pb") == [] and doctor_flags(fixed / "saved_model") == []
    original = tf.saved_model.load(str(MINI)).signatures["serving_default"]
    flat = tf.saved_model.load(str(fixed / "saved_model"))
    for b in (1, 3, 64):
        x = tf.constant(np.random.default_rng(b).standard_normal((b, 128, 96)).astype(np.float32))
        want = original(melspectrogram=x)["output_0"].numpy()
        got = flat(melspectrogram=x)["output_0"].numpy()
        assert want.shape == got.shape == (b, 10) and np.max(np.abs(want - got)) <= 1e-5


def test_fixed_model_loads_in_essentia_under_a_second(fixed):
    host = pytest.importorskip("graphport.runtime.essentia_host")
    try:
        host.ensure_essentia_python()
    except host.EssentiaUnavailable as e:
        pytest.skip(str(e))
    x = np.random.default_rng(0).standard_normal((3, 1, 128, 96)).astype(np.float32)
    r = host.essentia_run(fixed / "model.pb", "melspectrogram", "output_0", [x], timeout=60, steady_runs=1)
    assert r["ok"], r.get("error")
    assert r["load_s"] < 1.0 and r["outputs"][0].reshape(3, 10).shape == (3, 10)


def test_measure_times_the_fixed_model(fixed, capsys):
    assert _doctor(str(fixed / "model.pb"), "--measure", "--measure-timeout", "60") == 0
    text = capsys.readouterr().out
    assert "measured load via capi" in text and "measured load via session" in text and "nan s" not in text


def test_graphport_output_is_not_flagged(tmp_path):
    from graphport import convert

    convert(EXAMPLE, tmp_path / "out", verify_outputs=False)
    assert doctor_flags(tmp_path / "out" / "model.pb") == []
    assert doctor_flags(tmp_path / "out" / "saved_model") == []


def test_pb_with_functions_is_flagged_and_flattened(tmp_path):
    w = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))

    @tf.function
    def inner(x, w):
        return tf.reshape(tf.matmul(x, w), [-1, tf.shape(w)[1] * 1])

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def outer(x):
        return tf.nn.relu(inner(x, w))

    path = tmp_path / "f.pb"
    path.write_bytes(outer.get_concrete_function().graph.as_graph_def().SerializeToString())
    flags = doctor_flags(path)
    assert any("Reshape" in f for f in flags) and any("weights passed as function arguments" in f for f in flags)
    assert _doctor(str(path), "--fix", "-o", str(tmp_path / "out")) == 0
    assert doctor_flags(tmp_path / "out" / "model.pb") == []


@pytest.mark.parametrize("content", [b"hello, this is not a model\n" * 10, b"", EXAMPLE.read_bytes()])
def test_not_a_tf_model(tmp_path, content):
    path = tmp_path / "model.pb"
    path.write_bytes(content)
    with pytest.raises(DoctorError, match="not a TensorFlow model") as e:
        _doctor(str(path))
    assert e.value.exit_code == 2 and path.read_bytes() == content


def test_fix_needs_an_output_and_refuses_to_overwrite(tmp_path, fixed):
    with pytest.raises(DoctorError, match="-o OUT"):
        _doctor(str(MINI), "--fix")
    with pytest.raises(GraphportError, match="already exists"):
        write(flatten(load(fixed / "model.pb")), fixed)


def test_a_model_that_differs_is_not_written(tmp_path):
    from collections import Counter

    from graphport.core.errors import VerificationFailed
    from graphport.doctor.fix import FixResult

    result = FixResult(tf.compat.v1.GraphDef(), {"x": [None, 4]}, ["y"], Counter(), Counter(), {1: 0.0, 64: 2e-5})
    with pytest.raises(VerificationFailed, match="differs") as e:
        write(result, tmp_path / "out")
    assert e.value.exit_code == 1 and not list(tmp_path.iterdir())


def _two_meta_graphs(path: Path) -> None:
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.identity(x * 2.0, name="y")
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder = tf.compat.v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.add_meta_graph(["train"], signature_def_map={"other": sig})
        builder.save()


def test_several_meta_graphs_need_a_tag(tmp_path, capsys):
    _two_meta_graphs(tmp_path / "sm")
    with pytest.raises(DoctorError, match="2 meta graphs.*--tag"):
        _doctor(str(tmp_path / "sm"))
    with pytest.raises(DoctorError, match="no signature 'nope'"):
        _doctor(str(tmp_path / "sm"), "--tag", "train", "--signature", "nope")
    assert _doctor(str(tmp_path / "sm"), "--tag", "serve", "--fix", "-o", str(tmp_path / "fixed")) == 0
    assert (tmp_path / "fixed" / "model.pb").exists() and "verified" in capsys.readouterr().out


class _Table(tf.Module):
    def __init__(self):
        init = tf.lookup.KeyValueTensorInitializer(tf.constant([1, 2], tf.int64), tf.constant([3.0, 4.0]))
        self.table = tf.lookup.StaticHashTable(init, -1.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def __call__(self, x):
        return {"y": self.table.lookup(x)}


class _Reader(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def __call__(self, name):
        return {"y": tf.io.read_file(name)}


@pytest.mark.parametrize("module, needle", [(_Table, r"cannot freeze op .*HashTable"),
                                            (_Reader, r"ReadFile .*--trust")])
def test_unfreezable_or_untrusted_ops_are_named(tmp_path, module, needle):
    m = module()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.__call__})
    before = _digest(tmp_path / "sm")
    with pytest.raises(DoctorError, match=needle):
        _doctor(str(tmp_path / "sm"), "--fix", "-o", str(tmp_path / "out"))
    assert _digest(tmp_path / "sm") == before and not (tmp_path / "out").exists()


def test_every_command_reads_a_doctor_fix_folder(fixed):
    """`doctor --fix` writes the model.json schema `convert` writes, so runtime, bench and predict take its folder."""
    from graphport.core import model_json
    from graphport.runtime import load as load_session
    from graphport.tools.benchmark import run_one

    meta = model_json.read(fixed)
    assert meta["schema"] == model_json.SCHEMA and meta["producer"] == "graphport doctor --fix"
    assert [e["name"] for e in meta["inputs"]] == ["melspectrogram"]
    x = np.random.default_rng(5).standard_normal((2, 128, 96)).astype(np.float32)
    want = tf.saved_model.load(str(MINI)).signatures["serving_default"](melspectrogram=tf.constant(x))["output_0"]
    for backend in ("session", "capi", "tf2"):
        sess = load_session(fixed, backend)
        got = next(iter(sess.run({"melspectrogram": x}).values()))
        sess.close()
        assert np.max(np.abs(got - want.numpy())) <= 1e-5, backend
    row = run_one(fixed, "session", [1], 1, 300.0, False)
    assert row["status"] == "ok", row
