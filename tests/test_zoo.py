"""Real architectures from timm's own code (random init, constant-initialised parameters randomised, BatchNorm
calibrated, opset 17, dynamic batch) convert with zero flags, verify under both oneDNN settings and raise no
warnings; their SavedModel and .pb load at once in Essentia's libtensorflow 2.5 and equal ORT there.

They used to be refused: ResNeSt, EfficientFormerV2 and Swin by the doctor gate (constant shape walks inside the
SavedModel's one function; fast to load in fact), EfficientNetV2 by an absolute 1e-5 batch-invariance bound that
float summation order in TF's Eigen kernels exceeds on its large outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from zoo_models import ZOO, zoo_model

import graphport
from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

ESSENTIA_LOAD_LIMIT_S = 1.0
ESSENTIA_MODELS = ("resnest", "efficientformerv2", "swin")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, tuple[Path, graphport.ConversionReport]]:
    root = tmp_path_factory.mktemp("zoo")
    out = {}
    for name in sorted(ZOO):
        path = root / f"{name}.onnx"
        zoo_model(name, path=path)
        out[name] = path, graphport.convert(path, root / name)
    return out


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_converts_with_zero_flags_and_verifies(converted, name):
    path, report = converted[name]
    assert report.ok, (report.verification.failures, [c for c in report.verification.checks if not c.ok])
    assert {c.onednn for c in report.verification.checks} == {"off", "on"}
    assert {c.batch for c in report.verification.checks} == {1, 3, 64}
    assert report.warnings == []
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_param, "dynamic batch"


@pytest.mark.parametrize("artifact", ["pb", "saved_model"])
@pytest.mark.parametrize("name", ESSENTIA_MODELS)
def test_zoo_loads_at_once_in_essentia(converted, name, artifact):
    path, report = converted[name]
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((b, 3, 64, 64)).astype(np.float32) for b in (1, 4)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = [sess.run(None, {"input": x})[0] for x in batches]
    model, inp, outp = artifact_names(report.out_dir, artifact)
    result = essentia_run(model, inp, outp, batches, 300.0, python=ensure_essentia_python())
    assert result["ok"], result.get("error")
    assert result["load_s"] < ESSENTIA_LOAD_LIMIT_S, f"Essentia load took {result['load_s']:.3f} s"
    for got, want in zip(result["outputs"], expected):
        err = float(np.max(np.abs(got.reshape(want.shape) - want)))
        assert err <= 1e-4 + 1e-3 * float(np.abs(want).max()), f"B={want.shape[0]}: max abs {err:.3g} vs ORT"
