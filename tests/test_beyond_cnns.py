"""Beyond CNNs: transformers, recurrent layers, raw-waveform front ends and decoders, with a dynamic batch.

Every model is built in tests/beyond_models.py, exported by torch, converted with zero flags and verified against
ONNX Runtime at B in {1, 3, 64}; every declined variant must raise UnsupportedModel naming the reason.
"""

from __future__ import annotations

import re

import beyond_models as bm  # tests/ is on sys.path under pytest's default (prepend) import mode
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from tensorflow.core.framework import graph_pb2

import graphport
from graphport.core.errors import GraphportError, UnsupportedModel
from graphport.emit.tf.batchdeps import batch_dependencies
from graphport.passes import fix_inputs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

BATCHES = (1, 3, 64)
FLOW = {"If", "While", "StatelessWhile", "Switch", "Merge", "Enter", "Exit", "NextIteration", "PartitionedCall",
        "StatefulPartitionedCall"}


def convert_ok(path, out, flat=True):
    report = graphport.convert(path, out, batch_sizes=BATCHES)
    v = report.verification
    assert report.ok, v.to_json()
    assert {c.batch for c in v.checks} == set(BATCHES)
    worst = max(c.max_abs for c in v.checks)
    assert worst <= 1e-4, f"max abs error {worst:.3g} vs ONNX Runtime"
    gd = graph_pb2.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    assert not FLOW & {n.op for n in gd.node} and not gd.library.function, "graph is not flat"
    if flat:
        assert report.tf_ops.get("Shape", 0) <= 1, report.tf_ops  # the batch is read once and reused
    return report, gd


def input_matters(path, shape):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal([4, *shape]).astype(np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert float(np.std(out, axis=0).max()) > 1e-3, "outputs barely depend on the input"


# ---- transformers -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset, norm_first, act", [(14, False, "gelu"), (17, True, "gelu"), (14, True, "relu"),
                                                    (17, False, "relu")])
def test_vit_converts_exactly(tmp_path, opset, norm_first, act):
    net = bm.seeded(bm.ViT, norm_first=norm_first, activation=act)
    path = bm.export_model(net, (32, 32), tmp_path / "vit.onnx", opset)
    input_matters(path, (32, 32))
    report, gd = convert_ok(path, tmp_path / "out")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Expand", "Softmax", "MatMul", "Where"} <= ops  # the CLS token, attention, masks really are in it
    assert report.tf_ops["Shape"] == 1
    deps = batch_dependencies(gd)
    assert deps["shape_reads"] and {c["op"] for c in deps["consumers"]} <= {"Reshape", "BroadcastTo", "Fill"}


def test_vit_dynamo(tmp_path):
    path = bm.export_model(bm.seeded(bm.ViT), (32, 32), tmp_path / "vit.onnx", None, dynamo=True)
    convert_ok(path, tmp_path / "out")


@pytest.mark.parametrize("opset", [11, 14, 17])  # 11: Squeeze/Unsqueeze/Split axes as attributes
def test_decomposed_layernorm_tanh_gelu_masked_attention(tmp_path, opset):
    path = bm.export_model(bm.seeded(bm.TanhGelu), (10, 24), tmp_path / "m.onnx", opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Tanh", "Pow", "ReduceMean", "Split", "Mod", "Equal", "Where"} <= ops
    convert_ok(path, tmp_path / "out")


# ---- recurrent --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, bidir, layers, opset", [("lstm", False, 1, 14), ("lstm", True, 2, 17),
                                                        ("gru", False, 1, 17), ("gru", True, 1, 14)])
def test_recurrent_unrolled(tmp_path, kind, bidir, layers, opset):
    path = bm.export_model(bm.seeded(bm.Recurrent, kind, bidir, layers), (7, 12), tmp_path / "r.onnx", opset)
    input_matters(path, (7, 12))
    report, _ = convert_ok(path, tmp_path / "out")
    assert report.tf_ops.get("MatMul", 0) >= 7  # one recurrent step per time step


def _lstm_model(peep=False, acts=None, seq="T"):
    h = 3
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * h, 2)), ("R", (1, 4 * h, h)), ("B", (1, 8 * h)), ("P", (1, 3 * h)))]
    attrs = {"hidden_size": h}
    if acts:
        attrs["activations"] = acts
    # batch-first around a time-major LSTM (ORT has no layout=1), as torch exports it
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["xt", "W", "R", "B", "", "", "", "P" if peep else ""], ["yt"], **attrs),
             helper.make_node("Transpose", ["yt"], ["y"], perm=[2, 0, 1, 3])]
    t = seq if seq != "T" else 5
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", t, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", t, 1, h])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[
        helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kw, reason", [({"peep": True}, "peepholes"),
                                        ({"acts": ["HardSigmoid", "Tanh", "Tanh"]}, "HardSigmoid")])
def test_recurrent_declines(tmp_path, kw, reason):
    with pytest.raises(UnsupportedModel, match=reason):
        graphport.convert(_lstm_model(**kw), tmp_path / "out")


def test_lstm_plain_node_matches(tmp_path):
    """The same hand-built node without the declined feature converts, so the declines above are precise."""
    convert_ok(_lstm_model(), tmp_path / "out")


def test_lstm_over_a_dynamic_length_runs_in_a_v1_loop(tmp_path):
    """A length known only at run time: a v1 While loop (no functions), verified at two lengths
    (tests/test_dynamic_dims.py loads such models in Essentia)."""
    report = graphport.convert(_lstm_model(seq="time"), tmp_path / "out", batch_sizes=BATCHES)
    assert report.ok, report.verification.to_json()
    assert {"Enter", "Exit", "LoopCond"} <= set(report.tf_ops) and "While" not in report.tf_ops
    assert len({c.dims["time"] for c in report.verification.checks}) == 2


# ---- raw waveform -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [14, 17])
def test_waveform_front_end(tmp_path, opset):
    path = bm.export_model(bm.seeded(bm.Waveform), (1600,), tmp_path / "w.onnx", opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"InstanceNormalization", "Elu", "LeakyRelu", "Selu", "MaxPool", "LogSoftmax"} <= ops
    input_matters(path, (1600,))
    convert_ok(path, tmp_path / "out")


# ---- decoders ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, align, out_pad, opset", [("nearest", None, 0, 11), ("bilinear", False, 0, 17),
                                                         ("bilinear", True, 1, 14), ("nearest", None, 1, 17)])
def test_decoder(tmp_path, mode, align, out_pad, opset):
    path = bm.export_model(bm.seeded(bm.Decoder, mode, align, out_pad), (4, 6, 5), tmp_path / "d.onnx", opset)
    convert_ok(path, tmp_path / "out", flat=False)


def _resize_cases():
    from onnx.backend.test.loader import load_model_tests

    return {t.name: t for t in load_model_tests(kind="node")
            if t.name.startswith("test_resize") or t.name == "test_upsample_nearest"}


def _frozen(case):
    """ONNX's own Resize test with its scales/sizes/roi made constants (the suite feeds them at run time)."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, _ = case.data_sets[0]
    graph = model.graph
    keep = graph.input[0]
    for vi, arr in list(zip(graph.input, inputs))[1:]:
        graph.initializer.append(numpy_helper.from_array(np.asarray(arr), vi.name))
    del graph.input[1:]
    return model, keep.name, inputs[0], case.data_sets[0][1][0]


# ONNX's reference divides align_corners coordinates by in*scale - 1, ORT (which graphport matches) by out - 1;
# they differ only when in*scale is fractional, as in this one case.
ORT_DIFFERS = {"test_resize_downsample_scales_linear_align_corners", "test_resize_downsample_scales_cubic_align_corners"}
_DECLINED = {"tf_crop_and_resize": "tf_crop_and_resize", "antialias": "antialias"}


@pytest.mark.parametrize("name", sorted(_resize_cases()))
def test_resize_modes_match_onnx(tmp_path, name):
    """Every ONNX Resize test case: exact (vs ORT and vs ONNX's expected output) or declined with its reason."""
    model, _, x, expected = _frozen(_resize_cases()[name])
    declined = next((why for key, why in _DECLINED.items() if key in name), None)
    if declined:
        with pytest.raises(UnsupportedModel, match=declined):
            graphport.convert(model, tmp_path / "out")
        return
    report = graphport.convert(model, tmp_path / "out")
    assert report.ok, report.verification.to_json()
    from graphport.conversion.onnx_backend import GraphportBackend

    if name in ORT_DIFFERS:
        return
    rep = GraphportBackend.prepare(model)
    np.testing.assert_allclose(rep.run([x])[0], expected, atol=1e-5)


def _conv_t(**attrs):
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "c", "h", "w"])
    return helper.make_model(helper.make_graph([node], "g", [x], [y], [w]), opset_imports=[
        helper.make_opsetid("", 17)])


@pytest.mark.parametrize("attrs, reason", [({"output_shape": [9, 9]}, "output_shape"),
                                           ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, "auto_pad")])
def test_conv_transpose_declines(tmp_path, attrs, reason):
    with pytest.raises(UnsupportedModel, match=reason):
        graphport.convert(_conv_t(**attrs), tmp_path / "out")


@pytest.mark.parametrize("attrs", [{"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 1]},
                                   {"strides": [3, 2], "dilations": [2, 1], "output_padding": [2, 0]},
                                   {"group": 2, "strides": [2, 2], "pads": [1, 1, 0, 0]}])
def test_conv_transpose_pads(tmp_path, attrs):
    convert_ok(_conv_t(**attrs), tmp_path / "out", flat=False)


def test_models_really_differ():
    """Guard: the helper models are seeded, so the same call gives the same weights (tests are reproducible)."""
    a, b = bm.seeded(bm.ViT), bm.seeded(bm.ViT)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# ---- control flow on model inputs -------------------------------------------------------------------------------
def test_if_on_input_runs_as_v1_control_flow_and_names_the_flag(tmp_path):
    report = graphport.convert(bm.branching_model(), tmp_path / "out", batch_sizes=BATCHES)
    assert report.ok and {"Switch", "Merge"} <= set(report.tf_ops)
    assert any(re.search(r"If .*depends on the value of graph input 'sr'.*--fix-input sr=VALUE", w)
               for w in report.warnings), report.warnings


@pytest.mark.parametrize("sr, nested, op", [(16000, False, "Relu"), (8000, False, "Sigmoid"),
                                            (16000, True, "Tanh")])
def test_fixed_input_folds_the_branch(tmp_path, sr, nested, op):
    model = fix_inputs(bm.branching_model(nested), {"sr": np.array(sr)})
    report, _ = convert_ok(model, tmp_path / "out")
    assert op in report.tf_ops and not {"If", "StatelessIf"} & set(report.tf_ops)


@pytest.mark.parametrize("values, needle", [({"rate": 1}, "does not take as input"),
                                            ({"sr": np.array([1, 2])}, "does not fit")])
def test_fix_input_errors(values, needle):
    with pytest.raises(GraphportError, match=needle):
        fix_inputs(bm.branching_model(), values)


def test_loop_with_constant_trip_count_unrolls(tmp_path):
    report, _ = convert_ok(bm.loop_model(3), tmp_path / "out")
    assert report.tf_ops.get("Tanh") == 3


def test_loop_on_input_trip_count(tmp_path):
    """Unpinned, it runs as a v1 While loop (tests/test_ops_control.py); pinned, it unrolls."""
    report, _ = convert_ok(fix_inputs(bm.loop_model(None), {"n": np.array(2)}), tmp_path / "out2")
    assert report.tf_ops.get("Tanh") == 2


@pytest.mark.parametrize("sr, op", [(16000, "Tanh"), (8000, "Mean")])
def test_vad_style_lstm_inside_if(tmp_path, sr, op):
    """The issue's voice-activity case: an LSTM inside the branch taken for the fixed sample rate."""
    report, _ = convert_ok(fix_inputs(bm.vad_model(), {"sr": np.array(sr)}), tmp_path / "out")
    assert op in report.tf_ops
