"""Every dynamic dim stays dynamic: models over a raw-audio length, a mel time axis or an image's height and width
convert with zero flags, verify at two sizes of each such dim (chosen by probing ONNX Runtime) and read each input's
shape once; `--fix-dim` pins a dim so that `If`s on it fold while the batch stays dynamic.

Models are built here with torch (random init, BatchNorm calibrated) and exported with the TorchScript exporter at
opset 17; every check compares with ONNX Runtime.
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper
from tensorflow.core.framework import graph_pb2
from torch import nn
from torch.nn import functional as F
from torch_models import calibrate

import graphport
from graphport.cli import main
from graphport.core.errors import GraphportError
from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

ESSENTIA_LOAD_LIMIT_S = 0.2


class RawAudioEncoder(nn.Module):
    """wav2vec2's shape: a strided conv front end whose first kernel spans 400 samples (so no output below that),
    GELU, a per-frame projection, one self-attention layer over the frames and a mean over them."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv1d(1, dim, 400, stride=160), nn.GELU(), nn.Conv1d(dim, dim, 3, stride=2),
                                   nn.GroupNorm(dim, dim), nn.GELU())
        self.proj = nn.Linear(dim, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = self.proj(self.convs(audio.unsqueeze(1)).transpose(1, 2))
        b, t, c = frames.shape  # heads split with the runtime batch and frame count, as transformers' code does
        q, k, v = self.qkv(frames).reshape(b, t, 3, 4, c // 4).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) / (c // 4) ** 0.5, dim=-1)
        return self.norm(frames + (attn @ v).transpose(1, 2).reshape(b, t, c))


class MelTagger(nn.Module):
    """A CNN tagger over [batch, time, 96] mel frames with global pooling, as Essentia's taggers are shaped."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(mel.unsqueeze(1)).amax(dim=(2, 3))))


class Segmenter(nn.Module):
    """Any image size: logits upsampled back to the input's own height and width (sizes read from its Shape at run
    time, as torchvision's segmenters do), bilinear and bicubic."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        size = x.shape[-2:]
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False) + \
            F.interpolate(y, size=size, mode="bicubic", align_corners=True)


class Recurrent(nn.Module):
    """A recurrent tagger over a dynamic number of frames: a 2-layer bidirectional LSTM, a GRU, per-frame logits."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 32, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(64, 16, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.lstm(frames)[0])[0])


def _export(net: nn.Module, example: torch.Tensor, path, name: str, axes: dict[int, str]):
    torch.manual_seed(1)
    with torch.no_grad():
        torch.onnx.export(net.eval(), (example,), str(path), input_names=[name], output_names=["output"],
                          opset_version=17, dynamo=False, dynamic_axes={name: axes, "output": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dyn")
    torch.manual_seed(0)
    tagger = calibrate(MelTagger(), (64, 96), steps=3, batch=8)
    return {
        "audio": _export(RawAudioEncoder(), torch.randn(2, 3200), root / "audio.onnx", "audio",
                         {0: "batch", 1: "samples"}),
        "mel": _export(tagger, torch.randn(2, 64, 96), root / "mel.onnx", "melspectrogram", {0: "batch", 1: "time"}),
        "image": _export(Segmenter(), torch.randn(2, 3, 40, 56), root / "image.onnx", "image",
                         {0: "batch", 2: "height", 3: "width"}),
        "recurrent": _export(Recurrent(), torch.randn(2, 30, 40), root / "recurrent.onnx", "frames",
                             {0: "batch", 1: "time"}),
    }


def _reads_each_input_once(out) -> dict:
    gd = graph_pb2.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    ops = [n.op for n in gd.node]
    assert not gd.library.function and not {"While", "StatelessWhile", "If", "StatelessIf"} & set(ops)
    if "Enter" not in ops:  # a loop reads its length and batch from its own input
        assert ops.count("Shape") <= 1, f"{ops.count('Shape')} Shape ops: shape arithmetic is not folded to one read"
    return json.loads((out / "model.json").read_text())


@pytest.mark.parametrize("name, dims", [("audio", ("samples",)), ("mel", ("time",)), ("image", ("height", "width")),
                                        ("recurrent", ("time",))])
def test_every_dim_stays_dynamic_and_is_verified_at_two_sizes(models, tmp_path, name, dims):
    report = graphport.convert(models[name], tmp_path / "out")
    assert report.ok, report.verification.to_json()
    meta = _reads_each_input_once(tmp_path / "out")
    sizes = meta["verified_dim_sizes"]
    assert len(sizes) == 2 and all(set(s) == set(dims) for s in sizes)
    for d in dims:
        assert sizes[0][d] != sizes[1][d], f"{d} verified at one size only"
    assert {tuple(sorted(c.dims.items())) for c in report.verification.checks} == \
        {tuple(sorted(s.items())) for s in sizes}
    assert meta["inputs"][0]["shape"][0] == "batch" and set(dims) <= set(meta["inputs"][0]["shape"])
    if len(dims) == 2:  # distinct sizes per dim: a swapped height and width cannot pass
        assert sizes[1][dims[0]] != sizes[1][dims[1]]


def test_probed_length_is_one_the_model_accepts(models, tmp_path):
    """The 400-sample first kernel has no output below 400 samples: 16 (the old fixed size) made TF fail."""
    report = graphport.convert(models["audio"], tmp_path / "out", batch_sizes=(1, 2))
    assert report.ok
    assert min(c.dims["samples"] for c in report.verification.checks) >= 400


def test_verify_dim_overrides_the_probe(models, tmp_path):
    report = graphport.convert(models["mel"], tmp_path / "out", batch_sizes=(1, 2), verify_dims={"time": (50, 77)})
    assert report.ok
    assert {c.dims["time"] for c in report.verification.checks} == {50, 77}
    with pytest.raises(GraphportError, match="'frames'.*those are: 'time'"):
        graphport.convert(models["mel"], tmp_path / "bad", verify_dims={"frames": (50,)})


def test_a_graph_that_hard_codes_a_length_fails_verification(models, tmp_path, monkeypatch):
    """The second size is what catches a graph that froze the first: make the emitter bake `samples = 3200` into
    the encoder's runtime shape arithmetic and verification must refuse the result at 4800, and only there."""
    import tensorflow as tf

    from graphport.emit.tf.context import EmitContext

    real = EmitContext._atom
    monkeypatch.setattr(EmitContext, "_atom", lambda self, atom: tf.constant(3200, tf.int64)
                        if atom.name == "samples" else real(self, atom))
    report = graphport.convert(models["audio"], tmp_path / "out", batch_sizes=(1, 2),
                               verify_dims={"samples": (3200, 4800)})
    assert not report.ok
    assert all(c.ok for c in report.verification.checks if c.dims["samples"] == 3200)
    assert report.verification.failures or not all(c.ok for c in report.verification.checks)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("artifact", ["pb", "saved_model"])
@pytest.mark.parametrize("name, shapes", [("audio", [(1, 4000), (3, 6400)]), ("mel", [(1, 50, 96), (4, 123, 96)]),
                                          ("recurrent", [(1, 50, 40), (3, 200, 40)])])
def test_dynamic_length_loads_at_once_in_essentia(models, tmp_path, name, shapes, artifact):
    report = graphport.convert(models[name], tmp_path / "out", batch_sizes=(1, 2))
    assert report.ok
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    sess = ort.InferenceSession(str(models[name]), providers=["CPUExecutionProvider"])
    expected = [sess.run(None, {sess.get_inputs()[0].name: x})[0] for x in batches]
    model, inp, outp = artifact_names(tmp_path / "out", artifact)
    result = essentia_run(model, inp, outp, batches, 300.0, python=ensure_essentia_python())
    assert result["ok"], result.get("error")
    assert result["load_s"] <= ESSENTIA_LOAD_LIMIT_S, f"Essentia load took {result['load_s']:.3f} s"
    for got, want in zip(result["outputs"], expected):
        assert float(np.abs(got.reshape(want.shape) - want).max()) <= 1e-4


def _length_branch_model():
    """`if x.shape[1] == 512: relu(x) else: sigmoid(x)`, with x [batch, sequence] (Silero VAD branches like this)."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", "sequence"])

    def branch(op):
        out = helper.make_tensor_value_info(f"{op}_out", onnx.TensorProto.FLOAT, None)
        return helper.make_graph([helper.make_node(op, ["x"], [f"{op}_out"])], op, [], [out])

    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Constant", [], ["one"], value=helper.make_tensor("", onnx.TensorProto.INT64, [], [1])),
             helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
             helper.make_node("Constant", [], ["n"], value=helper.make_tensor("", onnx.TensorProto.INT64, [], [512])),
             helper.make_node("Equal", ["length", "n"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch("Relu"), else_branch=branch("Sigmoid"))]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_branch_on_a_length_names_fix_dim_and_folds_with_it(tmp_path, capsys):
    model = _length_branch_model()
    report = graphport.convert(model, tmp_path / "v1", batch_sizes=(1, 3))  # unpinned: a v1 cond, with a hint
    assert report.ok and any("size of dim 'sequence'" in w and "--fix-dim sequence=SIZE" in w for w in report.warnings)
    onnx.save(model, tmp_path / "m.onnx")
    before = (tmp_path / "m.onnx").read_bytes()
    assert main(["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out"), "--fix-dim", "sequence=512",
                 "--batch-sizes", "1,3"]) == 0
    assert (tmp_path / "m.onnx").read_bytes() == before, "the input file was modified"
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["fixed"]["dims"] == {"sequence": 512}
    assert meta["inputs"][0]["shape"] == ["batch", 512]
    assert "Relu" in meta["op_census"] and "Sigmoid" not in meta["op_census"]
    assert {c["batch"] for c in meta["verification"]["checks"]} == {1, 3}


@pytest.mark.parametrize("argv, needle", [
    (["--fix-dim", "seq=512"], "'seq', which is not a symbolic dim.*'batch', 'sequence'"),
    (["--fix-dim", "sequence=0"], "expected NAME=SIZE"),
    (["--fix-dim", "sequence=1,2"], "give one size"),
    (["--verify-dim", "sequence"], "expected NAME=SIZE"),
])
def test_fix_dim_and_verify_dim_errors_are_one_paragraph(tmp_path, capsys, argv, needle):
    onnx.save(_length_branch_model(), tmp_path / "m.onnx")
    try:
        code = main(["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out"), *argv])
    except SystemExit as e:  # a malformed value is a usage error from the parser
        code = e.code
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert code == 2 and "Traceback" not in err
    assert re.search(needle, " ".join(err.split())), err
    assert not (tmp_path / "out").exists()
