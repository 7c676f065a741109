"""A tf2onnx-style export: TF tensor names as ONNX names, a channels-last input, in-graph signal processing.

tf2onnx names inputs and outputs after TF tensors (`serving_default_input_2:0`, `StatefulPartitionedCall:0`),
which are not valid TF op names; feeds a channels-last tensor through a Transpose into NCHW convs; and computes
normalisation in the graph with ReduceMax/ReduceMin/Log/Where/Sqrt. The names must be sanitised, model.json must
map every ONNX name to its TF tensor, and the result must equal ONNX Runtime.
"""

import json

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import graphport
from graphport.runtime.backends import load

IN, OUT = "serving_default_input_2:0", "StatefulPartitionedCall:0"


def _model(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("eps", np.array(1e-6, np.float32)), ("zero", np.array(0.0, np.float32)), ("one", np.array(1.0, np.float32)),
        ("w", (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32)),
        ("b", rng.standard_normal(8).astype(np.float32)),
        ("dense", rng.standard_normal((8, 5)).astype(np.float32)), ("bias", rng.standard_normal(5).astype(np.float32)),
        ("shape", np.array([-1, 8], np.int64)), ("axis3", np.array([3], np.int64))]]
    n = helper.make_node
    nodes = [
        n("ReduceMax", [IN], ["mx"], axes=[1, 2], keepdims=1), n("ReduceMin", [IN], ["mn"], axes=[1, 2], keepdims=1),
        n("Sub", [IN, "mn"], ["num"]), n("Sub", ["mx", "mn"], ["rng"]), n("Add", ["rng", "eps"], ["den"]),
        n("Div", ["num", "den"], ["norm"]), n("Sqrt", ["norm"], ["root"]),
        n("Greater", [IN, "zero"], ["pos"]), n("Add", [IN, "one"], ["shift"]), n("Abs", ["shift"], ["absx"]),
        n("Log", ["absx"], ["logx"]), n("Where", ["pos", "logx", "root"], ["feat"]),
        n("Unsqueeze", ["feat", "axis3"], ["nhwc"]), n("Transpose", ["nhwc"], ["nchw"], perm=[0, 3, 1, 2]),
        n("Conv", ["nchw", "w", "b"], ["conv"], pads=[1, 1, 1, 1], strides=[2, 2]), n("Relu", ["conv"], ["act"]),
        n("GlobalAveragePool", ["act"], ["pool"]), n("Reshape", ["pool", "shape"], ["flat"]),
        n("MatMul", ["flat", "dense"], ["logits"]), n("Add", ["logits", "bias"], [OUT]),
    ]
    graph = helper.make_graph(nodes, "tf2onnx", [helper.make_tensor_value_info(IN, TensorProto.FLOAT,
                                                                               ["unk__12", 128, 96])],
                              [helper.make_tensor_value_info(OUT, TensorProto.FLOAT, ["unk__13", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    path.write_bytes(model.SerializeToString())


def test_tf2onnx_style_export(tmp_path):
    _model(tmp_path / "m.onnx")
    report = graphport.convert(tmp_path / "m.onnx", tmp_path / "out")
    assert report.ok and report.transposes == 0
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    (i,), (o,) = meta["inputs"], meta["outputs"]
    assert i["name"] == IN and i["pb"]["tensor"] == "serving_default_input_2_0:0"
    assert o["name"] == OUT and o["pb"]["tensor"] == "StatefulPartitionedCall_0:0"
    assert i["saved_model"]["argument"] == "serving_default_input_2_0"
    x = np.abs(np.random.default_rng(1).standard_normal((4, 128, 96))).astype(np.float32) - 0.3
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {IN: x})[0]
    for backend in ("capi", "tf2"):
        got = load(tmp_path / "out", backend).run({IN: x})[OUT]
        assert np.abs(got - ref).max() <= 1e-4
