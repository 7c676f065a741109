"""Real CNN families, exported by both PyTorch exporters, must convert exactly, batch-invariantly, and cleanly.

Each family is exported three ways (legacy TorchScript exporter at opsets 11 and 17, dynamo exporter at its default
opset), because each exporter spells shapes, padding and activations differently. Exports are cached per session:
the dynamo exporter alone takes several seconds per model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch_models  # tests/ is on sys.path under pytest's default (prepend) import mode

import graphport

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter announces itself

BATCHES = (1, 3, 64)
EXPORTERS = {"opset11": (11, False), "opset17": (17, False), "dynamo": (None, True)}
DEPTHWISE_FAMILIES = {"effnet_static", "effnet_dynamic", "mobilenet_v2", "mobilenet_v3", "shufflenet"}
SEED_FIXTURE = Path("/work/shared/fixtures/seed-effnet-b0/effnet_opset11_dynamic.onnx")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """`get(family, exporter) -> .onnx path`, each model built and each export made once per session."""
    root = tmp_path_factory.mktemp("families")
    models: dict[str, tuple] = {}
    paths: dict[tuple[str, str], Path] = {}

    def get(family: str, exporter: str) -> Path:
        if (family, exporter) not in paths:
            if family not in models:
                models[family] = torch_models.build(family)
            net, example, n_out = models[family]
            opset, dynamo = EXPORTERS[exporter]
            paths[family, exporter] = torch_models.export(net, example, root / f"{family}_{exporter}.onnx", opset,
                                                          dynamo, n_out)
        return paths[family, exporter]

    return get


def depthwise_convs(model: onnx.ModelProto) -> int:
    """ONNX Convs with one input channel per group (group > 1): each must become one DepthwiseConv2dNative."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    count = 0
    for n in model.graph.node:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        shape = weights.get(n.input[1]) if n.op_type == "Conv" else None
        count += bool(shape and group > 1 and shape[1] == 1 and len(shape) == 4)
    return count


def assert_input_matters(path: Path) -> None:
    """Calibrated BN or not, a model whose rows barely differ proves nothing; check the reference itself."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(1).standard_normal([4, *inp.shape[1:]]).astype(np.float32)
    for out in sess.run(None, {inp.name: x}):
        assert float(np.std(out, axis=0).max()) > 1e-3, "outputs barely depend on the input"


def check_report(report, path: Path, family: str) -> None:
    v = report.verification
    assert report.ok, v.to_json()
    assert {c.batch for c in v.checks} == set(BATCHES)
    worst = max(c.max_abs for c in v.checks)
    assert worst <= 1e-4, f"max abs error {worst:.3g} vs ONNX Runtime"
    assert v.batch_invariance_ok and v.batch_invariance <= 1e-5
    assert report.transposes <= 2, report.tf_ops
    if family in DEPTHWISE_FAMILIES:
        model = onnx.load(str(path))
        expected = depthwise_convs(model)
        assert expected > 0
        assert report.tf_ops.get("DepthwiseConv2dNative", 0) == expected, report.tf_ops
        splits = sum(n.op_type == "Split" for n in model.graph.node)  # ShuffleNet's chunk, as dynamo spells it
        assert report.tf_ops.get("Split", 0) + report.tf_ops.get("SplitV", 0) <= splits, \
            "grouped conv emitted as per-group split"


@pytest.mark.parametrize("exporter", list(EXPORTERS))
@pytest.mark.parametrize("family", list(torch_models.FAMILIES))
def test_family_converts_exactly(exported, tmp_path, family, exporter):
    path = exported(family, exporter)
    assert_input_matters(path)
    report = graphport.convert(path, tmp_path / "out", batch_sizes=BATCHES)
    check_report(report, path, family)
    assert (tmp_path / "out" / "model.pb").is_file()


def _seed_export(tmp_path: Path, **over) -> Path:
    """The seed network (fixtures/make/export_seed_effnet.py) rebuilt and exported at opset 17, dynamic batch."""
    torch.manual_seed(0)
    net = torch_models.calibrate(torch_models.SeedNet(num_classes=400, **over), torch_models.MEL, steps=30)
    return torch_models.export(net, torch.randn(1, *torch_models.MEL), tmp_path / "seed_opset17.onnx", 17, False,
                               input_name="melspectrogram")


def test_seed_effnet_small_opset17(tmp_path):
    """The seed architecture at small width/depth (the mini fixture's size): fast enough for every run."""
    path = _seed_export(tmp_path, width_coefficient=0.25, depth_coefficient=0.25)
    assert_input_matters(path)
    report = graphport.convert(path, tmp_path / "out", batch_sizes=BATCHES)
    check_report(report, path, "effnet_static")


@pytest.mark.slow
def test_seed_effnet_b0_opset17(tmp_path):
    """The full-size seed model re-exported at opset 17; where the fixture is at hand, it must be the same net."""
    path = _seed_export(tmp_path)
    if SEED_FIXTURE.is_file():
        x = np.random.default_rng(2).standard_normal([2, *torch_models.MEL]).astype(np.float32)
        ref, new = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"melspectrogram": x})[0]
                    for p in (SEED_FIXTURE, path))
        np.testing.assert_allclose(new, ref, atol=1e-5)
    report = graphport.convert(path, tmp_path / "out", batch_sizes=BATCHES)
    check_report(report, path, "effnet_static")
