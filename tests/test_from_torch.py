"""PyTorch in: `graphport.from_torch` and `graphport convert model.pt2`.

Every conversion here is checked twice by graphport (against ORT on the export, and against the module itself on
fresh inputs); these tests check that both ran, that the dims named dynamic stayed dynamic, and that what cannot be
exported as asked is refused by name. The module check is shown to catch an export that baked a value in: a module
with Python-side state exports, agrees with ORT, and disagrees with PyTorch.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
import torch_models
from rich.console import Console
from torch import nn

import graphport
from graphport.cli import main
from graphport.conversion.torch_export import TorchExportError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")


class RawWave(nn.Module):
    """Strided and dilated Conv1d, GroupNorm, LeakyReLU, MaxPool and a mean over time, on [batch, 1, samples]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 8, 9, stride=4), nn.GroupNorm(2, 8), nn.LeakyReLU(0.1),
                                  nn.MaxPool1d(3), nn.Conv1d(8, 8, 3, dilation=2))

    def forward(self, wave):
        return self.body(wave).mean(-1)


class FixedReshape(nn.Module):
    def forward(self, mel):
        return mel.reshape(mel.shape[0], 4, 25).sum(-1)  # 100 frames, spelled as a constant


class Gate(nn.Module):
    def forward(self, x):
        if x.mean() > 0:  # a tensor's value picks the Python branch
            return x * 2
        return x - 1


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.proj(x))


class Counting(nn.Module):
    """Scales by how often it was called: Python-side state, which an export keeps as the constant it saw."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.calls


def run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    return main(list(argv), out=Console(file=buf, width=200)), buf.getvalue()


def test_raw_wave_keeps_batch_and_samples_dynamic(tmp_path):
    torch.manual_seed(0)
    report = graphport.from_torch(RawWave().eval(), torch.randn(2, 1, 4000), tmp_path / "out",
                                  dynamic={"batch": 0, "samples": 2})
    assert report.ok and report.out_dir == tmp_path / "out"
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["inputs"][0]["shape"] == ["batch", 1, "samples"]
    assert meta["source"]["torch"]["exporter"] == "dynamo"
    against = [c for c in report.verification.checks if c.onednn == "vs PyTorch"]
    assert {c.dims["samples"] for c in against} >= {4000, *(s["samples"] for s in meta["verified_dim_sizes"])}
    assert {c.batch for c in against} >= {1, 3} and all(c.ok for c in against)
    assert {c.onednn for c in report.verification.checks} == {"on", "off", "vs PyTorch"}
    assert {c["onednn"] for c in meta["verification"]["checks"]} == {"on", "off", "vs PyTorch"}


def test_module_check_catches_an_export_that_baked_a_value_in(tmp_path):
    report = graphport.from_torch(Counting(), torch.randn(2, 8), tmp_path / "out", dynamic={"batch": 0})
    assert not report.ok and not (tmp_path / "out").exists()
    bad = [c for c in report.verification.checks if not c.ok]
    assert bad and {c.onednn for c in bad} == {"vs PyTorch"}  # ORT runs the same export, so it agrees with it


def test_keep_failed_keeps_what_failed_against_the_module(tmp_path):
    report = graphport.from_torch(Counting(), torch.randn(2, 8), tmp_path / "out", dynamic={"batch": 0},
                                  keep_failed=True)
    assert not report.ok and report.out_dir is None and not (tmp_path / "out").exists()
    meta = json.loads((tmp_path / "out.failed" / "model.json").read_text())
    assert meta["verification"]["ok"] is False and meta["source"]["torch"]["exporter"] == "dynamo"


def test_specialised_dim_is_named(tmp_path):
    with pytest.raises(TorchExportError, match="'time'"):
        graphport.from_torch(FixedReshape(), torch.randn(2, 100), tmp_path / "out", dynamic={"batch": 0, "time": 1})
    assert not (tmp_path / "out").exists()


def test_data_dependent_control_flow_names_the_submodule(tmp_path):
    with pytest.raises(TorchExportError, match="data-dependent control flow in 'gate'"):
        graphport.from_torch(Gated(), torch.randn(2, 8), tmp_path / "out", dynamic={"batch": 0})


def test_untraceable_module_is_refused(tmp_path):
    class Svd(nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x).S

    with pytest.raises(TorchExportError, match="cannot be exported to ONNX"):
        graphport.from_torch(Svd(), torch.randn(2, 4, 4), tmp_path / "out", dynamic={"batch": 0})


@pytest.mark.parametrize(("dynamic", "message"), [
    ({"batch": 5}, "axis 5 does not exist"),
    ({"batch": {"nope": 0}}, "names input 'nope'"),
    ({"bad name": 0}, "must be an identifier"),
])
def test_bad_dynamic_spec_is_a_user_error(tmp_path, dynamic, message):
    with pytest.raises(graphport.GraphportError, match=message):
        graphport.from_torch(RawWave(), torch.randn(2, 1, 4000), tmp_path / "out", dynamic=dynamic)


def test_convert_pt2_archive(tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(1, 4, 9, stride=4), nn.ReLU(), nn.Conv1d(4, 4, 3)).eval()
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim.DYNAMIC
    program = torch.export.export(net, (torch.randn(2, 1, 4000),), dynamic_shapes=({0: batch, 2: samples},))
    torch.export.save(program, tmp_path / "wave.pt2")
    code, text = run("convert", str(tmp_path / "wave.pt2"), "-o", str(tmp_path / "out"))
    assert code == 0, text
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    name = meta["inputs"][0]["name"]
    assert meta["inputs"][0]["shape"] == ["batch", 1, f"{name}_dim2"]
    assert "vs PyTorch" in text
    essentia = json.loads((tmp_path / "out" / "model.essentia.json").read_text())
    assert essentia["name"] == "wave" and essentia["schema"]["inputs"][0]["shape"] == [-1, 1, -1]


def test_damaged_pt2_exits_2(tmp_path):
    (tmp_path / "bad.pt2").write_bytes(b"not a zip")
    code, text = run("convert", str(tmp_path / "bad.pt2"), "-o", str(tmp_path / "out"))
    assert code == 2 and "not a torch.export archive" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", list(torch_models.FAMILIES))
def test_zoo_families_through_from_torch(tmp_path, family):
    net, example, _ = torch_models.build(family)
    report = graphport.from_torch(net, example, tmp_path / "out", dynamic={"batch": 0}, batch_sizes=(1, 3))
    assert report.ok, [c for c in report.verification.checks if not c.ok] or report.verification.failures
    assert any(c.onednn == "vs PyTorch" for c in report.verification.checks)
