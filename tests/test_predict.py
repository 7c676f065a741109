"""`graphport predict` against Essentia's pipeline: TensorflowPredict fed with Essentia's own mel patches.

The reference never touches graphport's front end or runtime: Essentia (its venv, libtensorflow 2.5, oneDNN off)
computes the patches from the same 16 kHz samples and runs the same graphport-converted .pb. graphport's outputs,
at several batch sizes whose batches span file boundaries and end in a short last batch, must equal them to 1e-4.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from essentia_ref import essentia_patches
from rich.console import Console

from graphport.cli import main
from graphport.runtime.essentia_host import essentia_run

EXAMPLE = Path(__file__).parents[1] / "graphport" / "examples" / "example_effnet.onnx"
SEED = Path("/work/shared/fixtures/seed-effnet-b0/effnet_opset11_dynamic.onnx")
ATOL = 1e-4
# The seed B0 (400 sigmoids) is more sensitive: on the *same* Essentia patches, ONNX Runtime differs from Essentia's
# libtensorflow 2.5 by 3.0e-4 and graphport's .pb by 2.9e-4 (oneDNN off) / 4.9e-4 (on): float32 noise of a deep net,
# below which no runtime gets. graphport's own patches (1.4e-4 from Essentia's in log space) add little: 5.3e-4.
SEED_ATOL = 1e-3


def predict(*argv: str) -> tuple[int, str]:
    """Run `graphport predict ARGV` as the main CLI does (GraphportError -> exit 2); return (code, output)."""
    buf = io.StringIO()
    code = main(["predict", *argv], out=Console(file=buf, width=200))
    return code, buf.getvalue()


def _audio(folder: Path) -> dict[str, np.ndarray]:
    """Two files at 16 kHz (so both sides see identical samples): 20 s of sweep + noise, 11 s of noise."""
    rng = np.random.default_rng(3)
    t = np.arange(20 * 16000) / 16000
    signals = {"a.wav": 0.4 * np.sin(2 * np.pi * (50 + 200 * t) * t) + 0.05 * rng.standard_normal(t.size),
               "b.wav": 0.2 * rng.standard_normal(11 * 16000)}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, x in signals.items():
        sf.write(folder / name, x.astype(np.float32), 16000, subtype="FLOAT")
        out[name] = x.astype(np.float32)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The example model converted once (a private cache), audio files, and Essentia's reference predictions."""
    root = tmp_path_factory.mktemp("predict")
    old_cache = os.environ.get("GRAPHPORT_CACHE_DIR")
    os.environ["GRAPHPORT_CACHE_DIR"] = str(root / "cache")
    signals = _audio(root / "audio")
    from graphport.predict import prepare_model

    model = prepare_model(EXAMPLE, log=lambda s: None)
    refs = {}
    for name, (_, patches) in zip(signals, essentia_patches(list(signals.values()))):
        res = essentia_run(model / "model.pb", "melspectrogram", "output_0", [patches], timeout=300, steady_runs=0)
        assert res["ok"], res.get("error")
        refs[name] = res["outputs"][0].reshape(len(patches), -1)
    yield root, refs
    if old_cache is None:
        os.environ.pop("GRAPHPORT_CACHE_DIR", None)
    else:
        os.environ["GRAPHPORT_CACHE_DIR"] = old_cache


@pytest.mark.parametrize("batch", ["1", "7", "64"])
def test_predictions_equal_essentia(setup, batch):
    root, refs = setup
    out = root / f"out-npy-{batch}"
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", batch)
    assert code == 0, text
    for name, ref in refs.items():
        got = np.load(out / f"{name}.npz")
        assert got["output_0"].shape == ref.shape
        assert np.abs(got["output_0"] - ref).max() <= ATOL, (name, batch)
        assert np.abs(got["output_0_mean"] - ref.mean(0)).max() <= ATOL
        assert np.allclose(got["start_s"], np.arange(len(ref)) * 62 * 256 / 16000)


def test_onnxruntime_backend_runs_the_onnx_itself(setup, monkeypatch):
    """`--backend onnxruntime` on an .onnx runs it as it is (it used to be converted to a .pb first, which that
    backend then refused), and still gives Essentia's predictions."""
    import graphport.conversion.pipeline

    root, refs = setup
    monkeypatch.setattr(graphport.conversion.pipeline, "convert", lambda *a, **k: pytest.fail("converted the .onnx"))
    out = root / "out-ort"
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "7", "--backend", "onnxruntime")
    assert code == 0, text
    assert "backend onnxruntime" in text
    for name, ref in refs.items():
        assert np.abs(np.load(out / f"{name}.npz")["output_0"] - ref).max() <= ATOL, name


def test_parquet_table_equals_essentia(setup):
    import pyarrow.parquet as pq

    root, refs = setup
    out = root / "out-parquet"
    code, text = predict(str(EXAMPLE), str(root / "audio" / "a.wav"), str(root / "audio" / "b.wav"), "-o", str(out),
                         "--batch", "5", "--format", "parquet", "--outputs", "output_0")
    assert code == 0, text
    table = pq.read_table(out / "predictions.parquet")
    assert table.column_names == ["path", "patch_index", "start_s", "output_0"]
    means = pq.read_table(out / "means.parquet")
    for name, ref in refs.items():
        rows = table.filter(np.array([p.endswith(name) for p in table["path"].to_pylist()]))
        assert rows["patch_index"].to_pylist() == list(range(len(ref)))
        assert np.abs(np.stack(rows["output_0"].to_numpy(zero_copy_only=False)) - ref).max() <= ATOL
        mean = [m for p, m in zip(means["path"].to_pylist(), means["output_0"].to_pylist()) if p.endswith(name)]
        assert np.abs(np.array(mean[0]) - ref.mean(0)).max() <= ATOL


def test_bad_inputs_are_skipped_and_listed(setup, tmp_path):
    root, refs = setup
    audio = tmp_path / "mixed"
    audio.mkdir()
    (audio / "a.wav").write_bytes((root / "audio" / "a.wav").read_bytes())
    sf.write(audio / "silent.wav", np.zeros(5 * 16000, np.float32), 16000)
    sf.write(audio / "short.wav", 0.1 * np.ones(16000, np.float32), 16000)  # 64 frames < 128: no patch
    sf.write(audio / "stereo44k.flac", 0.1 * np.random.default_rng(0).standard_normal((3 * 44100, 2)), 44100)
    sf.write(audio / "empty.wav", np.zeros(0, np.float32), 16000)
    (audio / "noise.mp3").write_bytes(b"this is not audio" * 50)
    code, text = predict(str(EXAMPLE), str(audio), "-o", str(tmp_path / "out"), "--batch", "4")
    assert code == 1, text
    for name, reason in [("silent.wav", "silent"), ("short.wav", "too short"), ("empty.wav", "empty"),
                         ("noise.mp3", "")]:
        assert name in text and reason in text
        assert not (tmp_path / "out" / f"{name}.npz").exists()
    got = np.load(tmp_path / "out" / "a.wav.npz")["output_0"]
    assert np.abs(got - refs["a.wav"]).max() <= ATOL  # a neighbour's failure does not disturb shared batches
    assert np.load(tmp_path / "out" / "stereo44k.flac.npz")["output_0"].shape == (1, 10)  # 3 s: 188 frames
    assert "Traceback" not in text
    # --last-patch repeat: the short file gets its one patch, as Essentia's lastPatchMode='repeat' does.
    code, text = predict(str(EXAMPLE), str(audio / "short.wav"), "-o", str(tmp_path / "rep"), "--batch", "4",
                         "--last-patch", "repeat")
    assert code == 0, text


@pytest.mark.parametrize("argv,message", [
    (["--patch-size", "64"], "shape ['?', 128, 96]"),
    (["--outputs", "nope"], "unknown output"),
    (["--ray-address", "x:1"], "--engine ray"),
])
def test_user_errors_exit_2(setup, tmp_path, argv, message):
    root, _ = setup
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(tmp_path / "o"), "--batch", "2", *argv)
    assert code == 2 and message in text and "Traceback" not in text, text
    code, text = predict(str(EXAMPLE), str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o"))
    assert code == 2 and "does not exist" in text


def test_interrupted_run_keeps_finished_files_and_resumes(setup, tmp_path, monkeypatch):
    from graphport import predict as mod

    root, refs = setup
    out = tmp_path / "out"
    real_write, calls = mod.Outputs.write, []

    def write_then_interrupt(self, item, outputs):
        calls.append(item.key)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second file is being written
        real_write(self, item, outputs)

    monkeypatch.setattr(mod.Outputs, "write", write_then_interrupt)
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "3")
    assert code == 130, text
    assert sorted(p.name for p in out.iterdir()) == ["a.wav.npz", "graphport-predict.json"]  # no temp files
    monkeypatch.setattr(mod.Outputs, "write", real_write)
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "3")
    assert code == 0 and "1 of 2 files already done" in text, text
    for name, ref in refs.items():
        assert np.abs(np.load(out / f"{name}.npz")["output_0"] - ref).max() <= ATOL
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--patch-hop", "31", "--batch", "3")
    assert code == 2 and "other settings" in text  # a resumed run must not mix settings


def test_ray_engine_equals_essentia(setup):
    ray = pytest.importorskip("ray")
    root, refs = setup
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        out = root / "out-ray"
        code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "8", "--engine", "ray",
                             "--actors", "2")
        assert code == 0, text
        for name, ref in refs.items():
            assert np.abs(np.load(out / f"{name}.npz")["output_0"] - ref).max() <= ATOL
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.skipif(not SEED.exists(), reason="the seed fixture lives in shared/ (this machine and CI only)")
def test_seed_model_equals_essentia(tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    signals = _audio(audio)
    from graphport.predict import prepare_model

    monkeypatch.setenv("GRAPHPORT_CACHE_DIR", str(tmp_path / "cache"))
    model = prepare_model(SEED, log=lambda s: None)
    for batch in ("1", "7", "64"):
        code, text = predict(str(SEED), str(audio), "-o", str(tmp_path / f"out{batch}"), "--batch", batch)
        assert code == 0, text
    for name, (_, patches) in zip(signals, essentia_patches(list(signals.values()))):
        res = essentia_run(model / "model.pb", "melspectrogram", "output_0", [patches], timeout=600, steady_runs=0)
        assert res["ok"], res.get("error")
        ref = res["outputs"][0].reshape(len(patches), -1)
        floor = np.abs(ort_run(SEED, patches) - ref).max()  # ORT on Essentia's own patches: the noise floor
        for batch in ("1", "7", "64"):
            got = np.load(tmp_path / f"out{batch}" / f"{name}.npz")["output_0"].reshape(ref.shape)
            assert np.abs(got - ref).max() <= max(SEED_ATOL, 3 * floor), (name, batch, floor)


def ort_run(model: Path, patches: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: patches})[0]
    return out.reshape(len(patches), -1)
