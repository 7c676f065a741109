"""The whole-opset issue's real models, converted with zero flags, loaded and run in Essentia's TensorflowPredict
(libtensorflow 2.5, oneDNN off) and compared with ONNX Runtime on the ONNX file.

- a raw-audio tagger with its front end in the graph (torch.stft -> mel -> log -> CNN), opset 17 and 18;
- the example EfficientNet quantized by onnxruntime.quantization, static QDQ and dynamic;
- a decoder block exported by torch's dynamo at opset 23 (Attention, RotaryEmbedding, RMSNormalization).

`convert` already proves each graph equal to ORT in TF 2.21 and checks its ops against libtensorflow 2.5's
registry; this proves the older runtime imports and computes it, which is what the registry check cannot see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_ops_attention import export_dynamo_block
from test_ops_quant import _output_step, quantized  # noqa: F401  quantized: the module's fixture, shared
from test_ops_signal import RATE, SAMPLES, _export_tagger

import graphport
from graphport.conversion.verify import QUANT_STEPS
from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::FutureWarning")
LOAD_LIMIT_S = 1.0
TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def essentia_python() -> Path:
    return ensure_essentia_python()


def _in_essentia(python: Path, onnx_path: Path, out: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    """Convert with zero flags, run the .pb in Essentia, return its outputs in ORT's shapes after checking that
    the load was fast and that the reference depends on the input (else the comparison proves nothing)."""
    report = graphport.convert(onnx_path, out, batch_sizes=(1, 3))
    assert report.ok, report.verification.to_json() if report.verification else report
    model, inp, outp = artifact_names(out, "pb")
    result = essentia_run(model, inp, outp, batches, TIMEOUT_S, python=python)
    assert result["ok"], result.get("error")
    assert result["load_s"] < LOAD_LIMIT_S, f"Essentia load took {result['load_s']:.3f} s"
    return result["outputs"]


def _ort(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x})[0] for x in batches]


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], atol: float) -> None:
    assert float(np.ptp(want[-1], axis=0).max()) > 1e-3, "reference rows are all alike: the check proves nothing"
    for g, w in zip(got, want):
        assert g.size == w.size, (g.shape, w.shape)
        err = float(np.abs(g.reshape(w.shape) - w).max())
        assert err <= atol, f"B={w.shape[0]}: max abs {err:.3g} vs ONNX Runtime (allowed {atol:.3g})"


@pytest.mark.parametrize("opset", [17, 18])
def test_raw_audio_tagger_in_essentia(essentia_python, tmp_path, opset):
    path = tmp_path / "tagger.onnx"
    _export_tagger(path, opset, center=False)
    t = np.arange(SAMPLES) / RATE
    batches = [np.stack([np.sin(2 * np.pi * (100 + 2000 * k + 3000 * t) * t) * (k + 1) / 4
                         + np.random.default_rng(k).normal(0, 0.01, SAMPLES) for k in range(b)]).astype(np.float32)
               for b in (1, 4)]
    got = _in_essentia(essentia_python, path, tmp_path / "out", batches)
    _assert_close(got, _ort(path, batches), 1e-4)


@pytest.mark.parametrize("kind", ["qdq", "dynamic"])
def test_quantized_effnet_in_essentia(essentia_python, tmp_path, quantized, kind):  # noqa: F811
    """Within QUANT_STEPS output steps of ORT running the graph as written (ORT with optimisations off), as in
    test_ops_quant: float ops between quantized ones round now and then to the other side of a boundary."""
    batches = [np.random.default_rng(b).standard_normal((b, 128, 96)).astype(np.float32) for b in (1, 3)]
    got = _in_essentia(essentia_python, quantized[kind], tmp_path / "out", batches)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(quantized[kind]), options, providers=["CPUExecutionProvider"])
    want = [session.run(None, {"melspectrogram": x})[0] for x in batches]
    _assert_close(got, want, QUANT_STEPS * _output_step(quantized[kind], want[-1]))


def test_dynamo_decoder_block_in_essentia(essentia_python, tmp_path):
    path = tmp_path / "block.onnx"
    export_dynamo_block(path)
    assert {"Attention", "RotaryEmbedding", "RMSNormalization"} <= {n.op_type for n in onnx.load(path).graph.node}
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((b, s, 32)).astype(np.float32) for b, s in ((1, 8), (3, 8), (2, 20))]
    got = _in_essentia(essentia_python, path, tmp_path / "out", batches)
    _assert_close(got, _ort(path, batches), 1e-4)


def test_layout_rewrites_in_essentia(essentia_python, tmp_path):
    """The graphs of the layout rewrites (a strided depthwise conv as SAME over zero taps, an exported GroupNorm
    over split channel groups, a patch embedding reshaped in the channels-last layout) in libtensorflow 2.5."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.dw = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
            self.norm, self.proj = nn.GroupNorm(4, 16), nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.norm(self.dw(torch.relu(self.stem(x))))
            return self.proj(x.flatten(2).transpose(1, 2)).mean(1)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.norm.weight.normal_(1.0, 0.3)
        net.norm.bias.normal_(0.0, 0.3)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (torch.randn(2, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    batches = [np.random.default_rng(b).standard_normal((b, 3, 16, 16)).astype(np.float32) for b in (1, 4)]
    got = _in_essentia(essentia_python, path, tmp_path / "out", batches)
    ops = [n.op for n in _graph_def(tmp_path / "out" / "model.pb").node]
    assert "Pad" not in ops and ops.count("Transpose") == 1  # the NCHW input only
    _assert_close(got, _ort(path, batches), 1e-4)


def _graph_def(path: Path):
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(path.read_bytes())
    return gd
