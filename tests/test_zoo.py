"""Bring your own model: real architectures (tests/zoo_models.py) convert with zero flags, verify against ONNX
Runtime under both oneDNN settings at several batch sizes (and two sizes of every other dynamic dim), and load at once
in Essentia's libtensorflow 2.5.

The default run takes a fast subset. `--run-zoo` runs the whole zoo and writes docs/zoo.md (architecture, ops,
verdict, error, nodes, Transposes, conversion time) with the pass rate the README quotes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from zoo_models import ZOO, zoo_model

import graphport
from graphport.core.errors import UnsupportedModel
from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

BATCHES = (1, 3, 8)
PASS_RATE = 0.95
ESSENTIA_LOAD_LIMIT_S = 1.0
ESSENTIA_MODELS = ("resnest", "efficientformerv2", "swin")
ZOO_DOC = Path(__file__).parent.parent / "docs" / "zoo.md"


@dataclass
class ZooResult:
    name: str
    verdict: str  # "pass", "refused" (a clean refusal naming nodes), "mismatch" (verification failed)
    error: str = ""
    onnx_ops: int = 0
    onnx_op_types: tuple[str, ...] = ()
    nodes: int = 0
    transposes: int = 0
    seconds: float = 0.0
    report: graphport.ConversionReport | None = None
    path: Path | None = None


def input_matters(path: Path, name: str, shape: tuple[int, ...]) -> bool:
    """A degenerate random net returns (nearly) the same output for any input: such a model proves nothing."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    a, b = (sess.run(None, {name: rng.standard_normal((2, *shape)).astype(np.float32)})[0] for _ in range(2))
    return float(np.abs(a - b).max()) > 1e-3 * max(float(np.abs(a).max()), 1e-6)


def run_entry(name: str, root: Path) -> ZooResult:
    """Export, check the model is not degenerate, convert with zero flags. Any exception but a clean refusal
    propagates: an internal error is a bug, never a verdict."""
    entry = ZOO[name]
    path = zoo_model(name, root / f"{name}.onnx")
    assert input_matters(path, entry.input_name, entry.shape), f"{name}: output does not depend on the input"
    model = onnx.load(path)
    types = tuple(sorted({n.op_type for n in model.graph.node}))
    result = ZooResult(name, "pass", onnx_ops=len(model.graph.node), onnx_op_types=types, path=path)
    start = time.perf_counter()
    try:
        report = graphport.convert(path, root / name, batch_sizes=BATCHES)
    except UnsupportedModel as e:
        result.verdict, result.error = "refused", str(e)
        return result
    result.seconds = time.perf_counter() - start
    result.report, result.nodes, result.transposes = report, report.tf_nodes, report.transposes
    if not report.ok:
        v = report.verification
        result.verdict = "mismatch"
        result.error = "; ".join([f.message for f in v.failures] + [
            f"{c.output} oneDNN {c.onednn} B={c.batch} max abs {c.max_abs:.3g}" for c in v.checks if not c.ok])[:300]
    return result


def check_passed(result: ZooResult) -> None:
    report = result.report
    assert result.verdict == "pass", f"{result.name}: {result.verdict}: {result.error}"
    assert {c.onednn for c in report.verification.checks} == {"off", "on"}
    assert {c.batch for c in report.verification.checks} == set(BATCHES)
    assert report.warnings == []


@pytest.fixture(scope="module")
def fast(tmp_path_factory) -> dict[str, ZooResult]:
    root = tmp_path_factory.mktemp("zoo")
    return {name: run_entry(name, root) for name in sorted(n for n, e in ZOO.items() if e.fast)}


@pytest.mark.parametrize("name", sorted(n for n, e in ZOO.items() if e.fast))
def test_zoo_subset_converts_with_zero_flags_and_verifies(fast, name):
    check_passed(fast[name])


@pytest.mark.parametrize("artifact", ["pb", "saved_model"])
@pytest.mark.parametrize("name", ESSENTIA_MODELS)
def test_zoo_loads_at_once_in_essentia(fast, name, artifact):
    result = fast[name]
    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((b, *ZOO[name].shape)).astype(np.float32) for b in (1, 4)]
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    expected = [sess.run(None, {ZOO[name].input_name: x})[0] for x in batches]
    model, inp, outp = artifact_names(result.report.out_dir, artifact)
    run = essentia_run(model, inp, outp, batches, 300.0, python=ensure_essentia_python())
    assert run["ok"], run.get("error")
    assert run["load_s"] < ESSENTIA_LOAD_LIMIT_S, f"Essentia load took {run['load_s']:.3f} s"
    for got, want in zip(run["outputs"], expected):
        err = float(np.max(np.abs(got.reshape(want.shape) - want)))
        assert err <= 1e-4 + 1e-3 * float(np.abs(want).max()), f"B={want.shape[0]}: max abs {err:.3g} vs ORT"


@pytest.mark.zoo
def test_whole_zoo(tmp_path):
    """Every architecture, one at a time; writes docs/zoo.md from this run."""
    results = [run_entry(name, tmp_path) for name in ZOO]
    ZOO_DOC.write_text(render(results))
    passed = [r for r in results if r.verdict == "pass"]
    for r in results:
        if r.verdict == "refused":
            assert "node '" in r.error, f"{r.name}: a refusal must name the nodes: {r.error}"
    assert len(passed) >= PASS_RATE * len(results), [(r.name, r.verdict, r.error[:200]) for r in results
                                                     if r.verdict != "pass"]


def render(results: list[ZooResult]) -> str:
    passed = sum(r.verdict == "pass" for r in results)
    lines = [
        "# The architecture zoo",
        "",
        ("Written by `pytest tests/test_zoo.py --run-zoo` (tests/zoo_models.py builds the models): real architectures "
         "from timm, torchvision and transformers, random weights with constant-initialised parameters randomised and "
         "BatchNorm calibrated, exported with a dynamic batch (TorchScript exporter at opset 17; `*_dynamo` with "
         "torch's dynamo exporter at opset 18), converted with zero flags and verified against ONNX Runtime with "
         f"oneDNN off and on at batch sizes {', '.join(map(str, BATCHES))}, and at two sizes of every other dynamic "
         "dim."),
        "",
        f"**{passed} of {len(results)} pass ({100 * passed / len(results):.0f} %).**",
        "",
        "| architecture | source | ONNX nodes | ONNX op types | verdict | TF nodes | Transposes | convert s | error |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        entry = ZOO[r.name]
        source = entry.family + (" (dynamo)" if entry.dynamo else "")
        error = " ".join(r.error.split())[:160].replace("|", "\\|")
        lines.append(f"| {r.name} | {source} | {r.onnx_ops} | {len(r.onnx_op_types)} | {r.verdict} | {r.nodes} | "
                     f"{r.transposes} | {r.seconds:.1f} | {error} |")
    ops = sorted({op for r in results for op in r.onnx_op_types})
    lines += ["", f"ONNX op types across the zoo ({len(ops)}): {', '.join(ops)}.", ""]
    return "\n".join(lines)
