"""Runtime backends, bench, profile and the batch picker, on the bundled example and the onnx-tf mini fixture."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import graphport
from graphport.cli import main
from graphport.conversion.bundled_example import EXAMPLE
from graphport.core.errors import GraphportError
from graphport.runtime.backends import load

DATA = Path(__file__).parent / "data"
ONNXTF = DATA / "mini_onnxtf_dynamic_savedmodel"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt") / "out"
    assert graphport.convert(EXAMPLE, d, batch_sizes=(1, 3)).ok
    return d


def _x(b):
    return np.random.default_rng(b).standard_normal((b, 128, 96)).astype(np.float32)


def test_every_backend_equals_ort_and_capi_equals_session_exactly(out):
    x = _x(4)
    ref = ort.InferenceSession(str(EXAMPLE), providers=["CPUExecutionProvider"]).run(None, {"melspectrogram": x})[0]
    results = {}
    for path, backend in [(out, "capi"), (out, "session"), (out, "tf2"), (out / "saved_model", "capi"),
                          (out / "model.pb", "session"), (EXAMPLE, "onnxruntime")]:
        sess = load(path, backend)
        assert [i.name for i in sess.inputs] == ["melspectrogram"] and [o.name for o in sess.outputs] == ["output_0"]
        results[(str(path), backend)] = sess.run({"melspectrogram": x})["output_0"]
        sess.close()
        assert np.abs(results[(str(path), backend)] - ref).max() <= 1e-4
    assert np.array_equal(results[(str(out), "capi")], results[(str(out), "session")]), "same TF kernels"


def test_onnxtf_savedmodel_runs_in_capi_and_tf2():
    x = _x(2)
    a = load(ONNXTF, "capi").run({"melspectrogram": x})["output_0"]
    b = load(ONNXTF, "tf2").run({"melspectrogram": x})["output_0"]
    assert a.shape == (2, 10) and np.abs(a - b).max() <= 1e-5


@pytest.mark.parametrize("feeds, needle", [
    ({"melspectrogram": np.zeros((2, 128, 95), np.float32)}, "must have shape"),
    ({"melspectrogram": np.zeros((0, 128, 96), np.float32)}, "batch size 0"),
    ({"melspectrogram": np.zeros((1, 128, 96), np.float64)}, "must be float32"),
    ({"spectrogram": np.zeros((1, 128, 96), np.float32)}, "missing"),
])
def test_bad_feeds_are_clear_errors(out, feeds, needle):
    with pytest.raises(GraphportError, match=needle):
        load(out, "capi").run(feeds)


def test_nan_and_inf_propagate_like_ort(out):
    x = _x(2)
    x[0, 3, 4], x[1, 0, 0] = np.nan, np.inf
    ref = ort.InferenceSession(str(EXAMPLE), providers=["CPUExecutionProvider"]).run(None, {"melspectrogram": x})[0]
    got = load(out, "capi").run({"melspectrogram": x})["output_0"]
    assert np.array_equal(np.isnan(ref), np.isnan(got))


def test_capi_reports_tf_errors():
    from graphport.runtime.capi import CAPIError, CAPISession

    with pytest.raises(CAPIError, match="TF_GraphImportGraphDef"):
        CAPISession(EXAMPLE)  # an ONNX file is not a GraphDef


def test_bench_reports_timeout_instead_of_hanging(out, tmp_path, capsys):
    report = tmp_path / "b.json"
    rc = main(["bench", str(out), "--vs", str(ONNXTF), "--backends", "capi,essentia", "--batch-sizes", "1,4",
               "--repeat", "2", "--timeout", "20", "--json", str(report)])
    rows = json.loads(report.read_text())
    assert rc == 0
    ours = {r["backend"]: r for r in rows if r["model"] == str(out)}
    theirs = {r["backend"]: r for r in rows if r["model"] == str(ONNXTF)}
    assert ours["capi"]["status"] == "ok" and ours["capi"]["load_s"] < 1.0
    assert ours["essentia"]["status"] == "ok" and ours["essentia"]["load_s"] < 1.0
    assert "timed out" in theirs["essentia"]["status"]  # 117 s in libtensorflow 2.5: reported, not waited on
    assert theirs["capi"]["status"] == "ok"


def test_profile_prints_op_table(out, capsys):
    assert main(["profile", str(out), "--backend", "capi", "--phase", "both", "--batch", "4", "--runs", "1"]) == 0
    text = capsys.readouterr().out
    assert "#Occurrences" in text and "Conv2D" in text and "first_run" in text


_PICK = """
import json, sys
from graphport.runtime.batch_size import pick_batch_size
from graphport.runtime.backends import load
budget = None if sys.argv[2] == "free" else int(sys.argv[2])
c = pick_batch_size(load(sys.argv[1], "capi"), budget=budget, max_batch=64, knee_gain=-1.0)
print(json.dumps({"batch": c.batch, "peak": c.peak_bytes, "explain": c.explain(),
                  "probes": {p.batch: p.peak_bytes for p in c.probes}}))
"""


def _pick(out, budget):
    """Each pick in a fresh process: peak RSS never goes down within one, so probes must start clean."""
    run = subprocess.run([sys.executable, "-c", _PICK, str(out), budget], capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_pick_batch_size_respects_budget(out):
    free = _pick(out, "free")
    assert free["batch"] == 64 and "patches/s" in free["explain"]  # no knee allowed, budget ample
    probes = {int(b): p for b, p in free["probes"].items()}
    tight_budget = probes[1] + (probes[64] - probes[1]) // 3
    tight = _pick(out, str(tight_budget))
    assert tight["peak"] <= tight_budget
    assert 1 <= tight["batch"] < 64


def _hungry_model(path):
    """[batch, 256] -> Tile to [batch, 1M] -> mean: 4 MB of activations per row, so memory, not speed, limits B."""
    from onnx import TensorProto, helper, numpy_helper, save

    reps = numpy_helper.from_array(np.array([1, 4096], np.int64), "reps")
    nodes = [helper.make_node("Tile", ["x", "reps"], ["t"]), helper.make_node("Exp", ["t"], ["e"]),
             helper.make_node("ReduceMean", ["e"], ["y"], axes=[1], keepdims=1)]
    graph = helper.make_graph(nodes, "hungry", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], [reps])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)


def test_batch_auto_backs_off_under_a_small_memory_budget(tmp_path):
    _hungry_model(tmp_path / "hungry.onnx")
    assert graphport.convert(tmp_path / "hungry.onnx", tmp_path / "out", batch_sizes=(1, 3)).ok
    free = _pick(tmp_path / "out", "free")
    probes = {int(b): p for b, p in free["probes"].items()}
    budget = probes[1] + 200 * 1024**2  # ~50 rows of activations
    tight = _pick(tmp_path / "out", str(budget))
    assert tight["peak"] <= budget
    assert 1 <= tight["batch"] < 64, tight["explain"]


def test_bench_reports_library_start_up_apart_from_the_load(out):
    """For a bare .pb the capi figure used to include `import tensorflow` (3.2 s): start-up is its own column now."""
    from graphport.tools.benchmark import run_one

    row = run_one(out / "model.pb", "capi", [1], 1, 300.0, False)
    assert row["status"] == "ok", row
    assert row["startup_s"] > row["load_s"] and row["load_s"] < 1.0


def test_feeds_use_the_verified_size_of_a_named_dim():
    """bench, profile and the batch picker feed a dynamic length at the size the conversion verified, not the
    generic 16 that a wav2vec2's strided convs reject; unnamed extra dims still get 16."""
    from graphport.runtime.feeds import OTHER_DIM, feeds_for
    from graphport.runtime.model_info import IOInfo, ModelInfo

    info = ModelInfo("pb", Path("m.pb"), [IOInfo("wave", ["batch", "samples"], "float32"),
                                          IOInfo("extra", ["batch", None], "float32")], [], None, {"samples": 400})
    feeds = feeds_for(info, 3)
    assert feeds["wave"].shape == (3, 400) and feeds["extra"].shape == (3, OTHER_DIM)
