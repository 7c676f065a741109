"""graphport's artifacts in Essentia's TensorflowPredict (libtensorflow 2.5 C API), the host that motivated graphport.

The onnx-tf conversions of these models take minutes to load there (docs/background.md §1); graphport's must load in well
under a second and give ONNX Runtime's outputs. Essentia runs in its own venv (created on demand, ~30 s with pip)
and in a subprocess, since its bundled libtensorflow clashes with the tensorflow wheel in this process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import graphport
from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

DATA = Path(__file__).parent / "data"
DYNAMIC = DATA / "mini_effnet_opset11_dynamic.onnx"
FIXED = DATA / "mini_effnet_opset11_fixed.onnx"
ATOL = 1e-4
LOAD_LIMIT_S = 1.0
TIMEOUT_S = 180.0  # the onnx-tf version of this model needs ~120 s to load: a regression would show as a timeout
# Whatever TF_ENABLE_ONEDNN_OPTS the test run has, essentia_run must not pass it on (libtensorflow 2.5 miscomputes
# with it).


def _batches(sizes: tuple[int, ...]) -> list[np.ndarray]:
    """Log-mel-like inputs (values in [0, 4)), different per row so batch mix-ups cannot pass unnoticed."""
    rng = np.random.default_rng(7)
    return [(4.0 * rng.random((b, 128, 96))).astype(np.float32) for b in sizes]


def _ort(onnx_path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return [sess.run(["output_0"], {"melspectrogram": x})[0] for x in batches]


@pytest.fixture(scope="module")
def essentia_python() -> Path:
    return ensure_essentia_python()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("essentia")
    dirs = {}
    for name, src in (("dynamic", DYNAMIC), ("fixed", FIXED)):
        report = graphport.convert(src, root / name)
        assert report.ok, report.verification
        dirs[name] = root / name
    return dirs


def _check(result: dict, expected: list[np.ndarray]) -> None:
    assert result["ok"], result.get("error")
    assert result["load_s"] < LOAD_LIMIT_S, f"Essentia load took {result['load_s']:.3f} s"
    assert len(result["outputs"]) == len(expected)
    for got, want in zip(result["outputs"], expected):
        assert got.size == want.size, (got.shape, want.shape)
        err = float(np.max(np.abs(got.reshape(want.shape) - want)))
        assert err <= ATOL, f"B={want.shape[0]}: max abs {err:.3g} vs ONNX Runtime"


@pytest.mark.parametrize("artifact", ["pb", "saved_model"])
def test_dynamic_batch_in_essentia(essentia_python: Path, converted: dict[str, Path], artifact: str) -> None:
    batches = _batches((1, 5))
    expected = _ort(DYNAMIC, batches)
    assert float(np.ptp(expected[1], axis=0).max()) > 1e-3, "reference rows are all alike: the check proves nothing"
    model, inp, out = artifact_names(converted["dynamic"], artifact)
    result = essentia_run(model, inp, out, batches, TIMEOUT_S, python=essentia_python)
    _check(result, expected)


@pytest.mark.parametrize("artifact", ["pb", "saved_model"])
def test_fixed_batch_in_essentia(essentia_python: Path, converted: dict[str, Path], artifact: str) -> None:
    batches = _batches((1,))
    model, inp, out = artifact_names(converted["fixed"], artifact)
    result = essentia_run(model, inp, out, batches, TIMEOUT_S, python=essentia_python)
    _check(result, _ort(FIXED, batches))


def test_timeout_is_reported_not_awaited(essentia_python: Path, converted: dict[str, Path]) -> None:
    model, inp, out = artifact_names(converted["dynamic"], "pb")
    result = essentia_run(model, inp, out, _batches((1,)), 0.2, python=essentia_python)
    assert result["timed_out"] and not result["ok"]
    assert result["wall_s"] < 30


def test_bad_node_name_fails_cleanly(essentia_python: Path, converted: dict[str, Path]) -> None:
    model, _, out = artifact_names(converted["dynamic"], "pb")
    result = essentia_run(model, "no_such_input", out, _batches((1,)), TIMEOUT_S, python=essentia_python)
    assert not result["ok"] and not result["timed_out"]
    assert "no_such_input" in result["error"] or "node names" in result["error"]
