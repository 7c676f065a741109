"""Essentia's model packaging: `convert` writes the metadata JSON Essentia ships beside each .pb, Essentia itself
reads it, and `predict` runs a `.pb` + `.json` package with no flags.

The reference is Essentia (its venv, libtensorflow 2.5): its loader takes every name, the algorithm and the sample
rate from the JSON graphport wrote, and its predictions must equal graphport's `predict`, which is given only the
`.pb`. A MusiCNN-shaped model (187-frame patches, hop 93) shows that the patching comes from the JSON's algorithm:
with TensorflowPredictEffnetDiscogs' patching the same run disagrees with Essentia.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from rich.console import Console
from torch import nn
from torch_models import calibrate, export

from graphport.cli import main
from graphport.runtime.essentia_host import ensure_essentia_python

WORKER = Path(__file__).with_name("essentia_package_worker.py")
CLASSES = ["rock", "jazz", "ambient", "techno", "folk"]


class TagNet(nn.Module):
    """A MusiCNN-shaped tagger on [batch, 187, 96] mel patches: per-class sigmoids and a 16-wide embedding."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(96, 24, 7, padding=3), nn.BatchNorm1d(24), nn.ReLU(),
                                  nn.MaxPool1d(4), nn.Conv1d(24, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, len(CLASSES))

    def forward(self, mel):
        embedding = self.conv(mel.transpose(1, 2)).mean(-1)
        return torch.sigmoid(self.head(embedding)), embedding


def run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    code = main(list(argv), out=Console(file=buf, width=200))
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """TagNet converted with its Essentia packaging, then packaged as Essentia ships models: tagnet.pb + tagnet.json."""
    root = tmp_path_factory.mktemp("packaging")
    torch.manual_seed(0)
    net = calibrate(TagNet(), (187, 96))
    onnx_path = export(net, torch.randn(2, 187, 96), root / "tagnet.onnx", 17, False, n_outputs=2, input_name="mel")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    code, text = run("convert", str(onnx_path), "-o", str(root / "out"), "--labels", str(root / "labels.txt"),
                     "--sample-rate", "16000", "--algorithm", "TensorflowPredictMusiCNN", "--name", "tagnet",
                     "--essentia-json", str(root / "copy.json"))
    assert code == 0, text
    pkg = root / "pkg"
    pkg.mkdir()
    shutil.copy(root / "out" / "model.pb", pkg / "tagnet.pb")
    shutil.copy(root / "out" / "model.essentia.json", pkg / "tagnet.json")
    rng = np.random.default_rng(5)
    t = np.arange(30 * 16000) / 16000
    sf.write(root / "song.wav", (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 30)) + 0.05 * rng.standard_normal(t.size))
             .astype(np.float32), 16000, subtype="FLOAT")
    return root


def essentia_predictions(pb: Path, js: Path, audio: Path, out: Path) -> np.ndarray:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    proc = subprocess.run([str(ensure_essentia_python()), str(WORKER), str(pb), str(js), str(audio), str(out)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


def test_json_has_every_field_essentia_reads(package):
    import tensorflow as tf

    meta = json.loads((package / "out" / "model.essentia.json").read_text())
    assert meta == json.loads((package / "copy.json").read_text())
    assert (meta["name"], meta["framework"], meta["framework_version"]) == ("tagnet", "tensorflow", tf.__version__)
    assert meta["model_types"] == ["frozen_model", "SavedModel"] and meta["classes"] == CLASSES
    assert meta["inference"] == {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"}
    graph = tf.compat.v1.GraphDef.FromString((package / "out" / "model.pb").read_bytes())
    ops = {n.name: n.op for n in graph.node}
    (inp,) = meta["schema"]["inputs"]
    assert ops[inp["name"]] == "Placeholder"
    assert (inp["type"], inp["shape"], inp["dim_names"]) == ("float", [-1, 187, 96], ["batch", None, None])
    outs = {o["output_purpose"]: o for o in meta["schema"]["outputs"]}
    assert set(outs) == {"predictions", "embeddings"} and all(o["name"] in ops for o in outs.values())
    assert outs["predictions"]["shape"] == [-1, len(CLASSES)] and outs["predictions"]["op"] == "Sigmoid"
    assert outs["embeddings"]["shape"] == [-1, 16]


def test_essentia_reads_the_json_and_predict_needs_no_flags(package):
    """Essentia, driven only by the JSON, and `graphport predict tagnet.pb song.wav -o out/` agree."""
    pkg = package / "pkg"
    ref = essentia_predictions(pkg / "tagnet.pb", pkg / "tagnet.json", package / "song.wav", package / "ess.npy")
    code, text = run("predict", str(pkg / "tagnet.pb"), str(package / "song.wav"), "-o", str(package / "pred"))
    assert code == 0, text
    got = np.load(package / "pred" / "song.wav.npz")
    name = json.loads((pkg / "tagnet.json").read_text())["schema"]["outputs"][0]["name"]
    assert got[name].shape == ref.shape and ref.shape[0] == 1 + (1 + 30 * 16000 // 256 - 187) // 93
    assert np.abs(got[name] - ref).max() <= 1e-4
    # the check can fail: with EffnetDiscogs' patching (hop 62) instead of the JSON's algorithm, it does
    code, text = run("predict", str(pkg / "tagnet.pb"), str(package / "song.wav"), "-o", str(package / "pred62"),
                     "--patch-size", "187", "--patch-hop", "62")
    assert code == 0, text
    assert np.load(package / "pred62" / "song.wav.npz")[name].shape != ref.shape


def _edited(package: Path, name: str, **inference) -> Path:
    folder = package / name
    folder.mkdir()
    shutil.copy(package / "pkg" / "tagnet.pb", folder / "tagnet.pb")
    meta = json.loads((package / "pkg" / "tagnet.json").read_text())
    meta["inference"].update(inference)
    (folder / "tagnet.json").write_text(json.dumps(meta))
    return folder / "tagnet.pb"


@pytest.mark.parametrize(("inference", "message"), [
    ({"sample_rate": 44100}, "44100 Hz"),
    ({"algorithm": "TensorflowPredictVGGish"}, "TensorflowInputVGGish"),
    ({"algorithm": "TensorflowPredictSomethingNew"}, "--patch-size and --patch-hop"),
])
def test_json_that_predict_cannot_honour_is_a_user_error(package, inference, message):
    model = _edited(package, f"bad-{next(iter(inference.values()))}", **inference)
    code, text = run("predict", str(model), str(package / "song.wav"), "-o", str(model.parent / "out"))
    assert code == 2 and message in " ".join(text.split()) and "Traceback" not in text


@pytest.mark.parametrize(("flags", "message"), [
    (["--output-purpose", "nope=embeddings"], "not outputs of the model"),
    (["--output-purpose", "output_0=logits"], "predictions"),
    (["--output-purpose", "output_0"], "OUTPUT=PURPOSE"),
    (["--labels", "/nonexistent/labels.txt"], "cannot read the labels file"),
])
def test_bad_packaging_flags_exit_2_and_write_nothing(package, flags, message):
    out = package / f"never-{len(flags[1])}"
    code, text = run("convert", str(package / "tagnet.onnx"), "-o", str(out), "--no-verify", *flags)
    assert code == 2 and message in " ".join(text.split()) and not out.exists()
