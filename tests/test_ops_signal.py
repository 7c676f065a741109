"""Signal ops (windows, DFT, STFT, MelWeightMatrix), always measured against ONNX Runtime.

Three layers: a raw-audio tagger exported by torch (STFT front end, mel matrix, CNN) converts with zero flags;
small hand-built models with constant sizes convert and verify; and the same ops with every size fed at run time
(the form ONNX's conformance tests use) run through graphport's backend and must equal ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from tensorflow.core.framework import graph_pb2

import graphport
from graphport.conversion.onnx_backend import GraphportBackend
from graphport.core.errors import UnsupportedModel
from graphport.runtime import load

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

BATCHES = (1, 3)
SAMPLES, N_FFT, HOP, N_MELS, RATE = 16000, 512, 256, 40, 16000
FLOW = {"If", "While", "StatelessWhile", "Switch", "Merge", "Enter", "Exit", "NextIteration", "PartitionedCall",
        "StatefulPartitionedCall"}
F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _ort(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    blob = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)


def _convert_ok(model, out) -> graphport.ConversionReport:
    """Convert with zero flags; graphport verifies against ONNX Runtime at both batch sizes and oneDNN settings."""
    report = graphport.convert(model, out, batch_sizes=BATCHES)
    checks = report.verification.checks
    assert report.ok, report.verification.to_json()
    assert {c.batch for c in checks} == set(BATCHES)
    assert len({c.onednn for c in checks}) == 2
    gd = graph_pb2.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    assert not FLOW & {n.op for n in gd.node} and not gd.library.function, "graph is not flat"
    return report


# ---- a raw-audio tagger from torch ----------------------------------------------------------------------------
def _mel_filters() -> np.ndarray:
    """[N_MELS, N_FFT // 2 + 1] triangular HTK-mel filters over the one-sided bins, peak 1."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(mel(0.0), mel(RATE / 2), N_MELS + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    rise = (freqs - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    fall = (edges[2:, None] - freqs) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0.0, np.minimum(rise, fall)).astype(np.float32)


class Tagger(torch.nn.Module):
    """STFT -> power -> mel -> log -> small CNN -> 10 logits, from [batch, samples] audio."""

    def __init__(self, center: bool):
        super().__init__()
        self.center = center
        self.register_buffer("window", torch.hann_window(N_FFT))
        self.register_buffer("mel", torch.from_numpy(_mel_filters()))
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(16, 10)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, N_FFT, HOP, window=self.window, center=self.center, return_complex=False)
        power = spec.pow(2).sum(-1)  # [batch, bins, frames]
        logmel = torch.log(torch.matmul(self.mel, power) + 1e-6)
        return self.head(self.features(logmel.unsqueeze(1)))


def _export_tagger(path, opset: int, center: bool) -> None:
    torch.manual_seed(0)
    net = Tagger(center)
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: the statistics of all calibration batches
    with torch.no_grad():
        for _ in range(4):
            net(torch.randn(8, SAMPLES))
    net.eval()
    torch.onnx.export(net, (torch.randn(2, SAMPLES),), str(path), dynamo=False, opset_version=opset,
                      input_names=["audio"], output_names=["logits"], dynamic_axes={"audio": {0: "batch"}})


@pytest.mark.parametrize("opset, center", [(17, False), (18, False), (17, True)])
def test_torch_stft_tagger_converts(tmp_path, opset, center):
    path = tmp_path / "tagger.onnx"
    _export_tagger(path, opset, center)
    assert "STFT" in {n.op_type for n in onnx.load(str(path)).graph.node}
    report = _convert_ok(path, tmp_path / "out")
    assert report.tf_ops.get("RFFT") == 1
    # an input of our own, not the verifier's: a chirp plus noise, where the bands really differ
    t = np.arange(SAMPLES) / RATE
    audio = np.stack([np.sin(2 * np.pi * (100 + 3000 * t) * t) * (k + 1) / 3
                      + np.random.default_rng(k).normal(0, 0.01, SAMPLES) for k in range(3)]).astype(np.float32)
    ref = _ort(str(path), {"audio": audio})[0]
    assert float(np.std(ref, axis=0).max()) > 1e-3, "logits barely depend on the audio"
    session = load(tmp_path / "out", backend="session")
    try:
        got = session.run({"audio": audio})["logits"]
    finally:
        session.close()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


# ---- hand-built models with constant sizes ----------------------------------------------------------------------
def _model(nodes, inputs, output_shape, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "signal", [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info("y", F, output_shape)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _i64(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.int64), name)


def _window_model(op_type: str, periodic: int) -> onnx.ModelProto:
    nodes = [helper.make_node(op_type, ["n"], ["w"], periodic=periodic), helper.make_node("Mul", ["x", "w"], ["y"])]
    return _model(nodes, [("x", ["batch", 24])], ["batch", 24], [_i64("n", 24)])


def _dft_model(shape, out_shape, axis: int, inverse=0, onesided=0, length=None, opset=17) -> onnx.ModelProto:
    inits = [] if length is None else [_i64("len", length)]
    names = ["x", "len" if length is not None else ""]
    attrs = {"inverse": inverse, "onesided": onesided}
    if opset >= 20:
        names.append("axis")
        inits.append(_i64("axis", axis))
    else:
        attrs["axis"] = axis
    return _model([helper.make_node("DFT", names, ["y"], **attrs)], [("x", ["batch", *shape])],
                  ["batch", *out_shape], inits, opset)


def _stft_model(channels: int, onesided: int, with_window: bool) -> onnx.ModelProto:
    """STFT with a Hann window made by a HannWindow node, frame_length 128, hop 48, over 1000 samples."""
    nodes = [helper.make_node("HannWindow", ["fl"], ["win"])] if with_window else []
    inputs = ["x", "step", "win" if with_window else "", "fl"]
    nodes.append(helper.make_node("STFT", inputs, ["y"], onesided=onesided))
    bins = 65 if onesided else 128
    return _model(nodes, [("x", ["batch", 1000, channels])], ["batch", 19, bins, 2],
                  [_i64("step", 48), _i64("fl", 128)])


def _front_end_model() -> onnx.ModelProto:
    """A whole ONNX-native front end: Hann window, STFT, power, MelWeightMatrix, log."""
    consts = [_i64("n_fft", N_FFT), _i64("hop", HOP), _i64("mels", N_MELS), _i64("rate", RATE),
              numpy_helper.from_array(np.array(20.0, np.float32), "lo"),
              numpy_helper.from_array(np.array(7600.0, np.float32), "hi"),
              numpy_helper.from_array(np.array(1e-6, np.float32), "eps"), _i64("last", [-1])]
    nodes = [helper.make_node("HannWindow", ["n_fft"], ["win"]),
             helper.make_node("STFT", ["x", "hop", "win"], ["spec"]),
             helper.make_node("ReduceSumSquare", ["spec", "last"], ["power"], keepdims=0),
             helper.make_node("MelWeightMatrix", ["mels", "n_fft", "rate", "lo", "hi"], ["mel"]),
             helper.make_node("MatMul", ["power", "mel"], ["m"]),
             helper.make_node("Add", ["m", "eps"], ["m_eps"]),
             helper.make_node("Log", ["m_eps"], ["y"])]
    return _model(nodes, [("x", ["batch", 4000, 1])], ["batch", 14, N_MELS], consts, opset=18)


CONSTANT_SIZE_MODELS = {
    "hann": lambda: _window_model("HannWindow", 1),
    "hamming_symmetric": lambda: _window_model("HammingWindow", 0),
    "blackman": lambda: _window_model("BlackmanWindow", 1),
    "dft_complex_axis1": lambda: _dft_model([12, 3, 2], [12, 3, 2], axis=1),
    "dft_inverse_axis2": lambda: _dft_model([4, 10, 2], [4, 10, 2], axis=2, inverse=1),
    "dft_rfft_padded": lambda: _dft_model([9, 1], [9, 2], axis=1, onesided=1, length=16),
    "dft_real_full_cut": lambda: _dft_model([3, 11, 1], [3, 7, 2], axis=-2, length=7),
    "dft20_axis_input": lambda: _dft_model([6, 5, 1], [6, 5, 2], axis=1, opset=20),
    "dft20_irfft": lambda: _dft_model([3, 9, 2], [3, 16, 1], axis=2, inverse=1, onesided=1, opset=20),
    "stft_real_window": lambda: _stft_model(1, 1, True),
    "stft_complex_twosided": lambda: _stft_model(2, 0, True),
    "stft_rectangular": lambda: _stft_model(1, 1, False),
    "front_end_with_mel_weight_matrix": _front_end_model,
}


@pytest.mark.parametrize("name", CONSTANT_SIZE_MODELS)
def test_constant_size_models_convert(tmp_path, name):
    model = CONSTANT_SIZE_MODELS[name]()
    _convert_ok(model, tmp_path / "out")
    x_info = model.graph.input[0].type.tensor_type.shape.dim
    x = np.random.default_rng(7).standard_normal([2, *(d.dim_value for d in x_info[1:])]).astype(np.float32)
    session = load(tmp_path / "out", backend="session")
    try:
        got = session.run({"x": x})["y"]
    finally:
        session.close()
    np.testing.assert_allclose(got, _ort(model, {"x": x})[0], atol=1e-4, rtol=1e-3)


def test_irfft_with_a_mismatched_dft_length_is_declined(tmp_path):
    model = _dft_model([3, 9, 2], [3, 12, 1], axis=2, inverse=1, onesided=1, length=12, opset=20)
    with pytest.raises(UnsupportedModel, match="IRFFT"):
        graphport.convert(model, tmp_path / "out", batch_sizes=BATCHES)


# ---- every size fed at run time ---------------------------------------------------------------------------------
def _runtime_model(nodes, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]],
                   opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "runtime", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _assert_like_ort(model: onnx.ModelProto, feed_sets: list[dict[str, np.ndarray]], atol: float) -> None:
    rep = GraphportBackend.prepare(model)
    try:
        for feeds in feed_sets:
            for got, ref in zip(rep.run(feeds), _ort(model, feeds)):
                assert got.shape == ref.shape, feeds
                np.testing.assert_allclose(got, ref, atol=atol, rtol=1e-3, err_msg=str(feeds))
    finally:
        rep.runner.close()


def test_windows_with_runtime_size():
    ops = [(op, p) for op in ("HannWindow", "HammingWindow", "BlackmanWindow") for p in (0, 1)]
    nodes = [helper.make_node(op, ["n"], [f"{op}_{p}"], periodic=p) for op, p in ops]
    nodes.append(helper.make_node("HannWindow", ["n"], ["hann_double"], output_datatype=TensorProto.DOUBLE))
    outputs = [(f"{op}_{p}", F, ["n"]) for op, p in ops] + [("hann_double", TensorProto.DOUBLE, ["n"])]
    model = _runtime_model(nodes, [("n", TensorProto.INT32, [])], outputs)
    _assert_like_ort(model, [{"n": np.array(n, np.int32)} for n in (2, 7, 400, 512)], atol=1e-6)


def test_mel_weight_matrix_with_runtime_inputs():
    names = ["num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz"]
    model = _runtime_model([helper.make_node("MelWeightMatrix", names, ["y"])],
                           [(n, I64, []) for n in names[:3]] + [(n, F, []) for n in names[3:]],
                           [("y", F, ["bins", "mels"])])
    params = [(8, 16, 8192, 0.0, 4096.0), (40, 512, 16000, 20.0, 7600.0), (64, 1024, 22050, 0.0, 11025.0),
              (128, 2048, 44100, 30.0, 16000.0), (23, 400, 16000, 125.0, 3800.0)]
    feeds = [{n: np.array(v, np.int64 if i < 3 else np.float32) for i, (n, v) in enumerate(zip(names, p))}
             for p in params]
    _assert_like_ort(model, feeds, atol=1e-6)


@pytest.mark.parametrize("onesided, channels", [(1, 1), (0, 1), (0, 2)])
def test_stft_with_runtime_sizes(onesided, channels):
    model = _runtime_model([helper.make_node("STFT", ["x", "step", "win", "fl"], ["y"], onesided=onesided)],
                           [("x", F, [2, 300, channels]), ("step", I64, []), ("win", F, ["fl"]), ("fl", I64, [])],
                           [("y", F, [2, "frames", "bins", 2])])
    x = np.random.default_rng(3).standard_normal((2, 300, channels)).astype(np.float32)
    feeds = [{"x": x, "step": np.array(step, np.int64), "fl": np.array(fl, np.int64),
              "win": np.hanning(fl).astype(np.float32)} for step, fl in ((7, 16), (32, 64), (50, 37))]
    _assert_like_ort(model, feeds, atol=1e-4)


@pytest.mark.parametrize("inverse, onesided, channels", [(0, 0, 1), (0, 1, 1), (0, 0, 2), (1, 0, 2), (1, 0, 1)])
def test_dft20_with_runtime_axis_and_length(inverse, onesided, channels):
    model = _runtime_model([helper.make_node("DFT", ["x", "len", "axis"], ["y"], inverse=inverse,
                                             onesided=onesided)],
                           [("x", F, [3, 8, 5, channels]), ("len", I64, []), ("axis", I64, [])],
                           [("y", F, ["a", "b", "c", 2])], opset=20)
    x = np.random.default_rng(5).standard_normal((3, 8, 5, channels)).astype(np.float32)
    feeds = [{"x": x, "len": np.array(n, np.int64), "axis": np.array(a, np.int64)}
             for a, n in ((1, 8), (-2, 5), (2, 9), (0, 2), (-3, 6))]
    _assert_like_ort(model, feeds, atol=1e-4)
