"""`convert --tflite`: model.tflite from the verified flat graph, dynamic batch kept, checked in LiteRT against ORT.

The checks here run the `.tflite` in LiteRT's interpreter themselves, at a batch the converter never tried, and
compare with ONNX Runtime on the `.onnx`; an op outside TFLite's builtins is listed by node while the `.pb` is still
written; and the LiteRT comparison is shown to fail on a deliberately wrong reference.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper
from rich.console import Console

from graphport.cli import main
from graphport.conversion.tflite import LABEL, check_tflite

MINI = Path(__file__).with_name("data") / "mini_effnet_opset11_dynamic.onnx"


def run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    return main(list(argv), out=Console(file=buf, width=200)), buf.getvalue()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tflite") / "out"
    code, text = run("convert", str(MINI), "-o", str(out), "--tflite")
    assert code == 0, text
    return out


def test_tflite_keeps_the_batch_and_equals_ort(converted):
    interpreter = Interpreter(model_path=str(converted / "model.tflite"))
    (detail,) = interpreter.get_input_details()
    assert list(detail["shape_signature"]) == [-1, 128, 96]
    runner = interpreter.get_signature_runner("serving_default")
    x = np.random.default_rng(7).standard_normal((5, 128, 96)).astype(np.float32)
    (got,) = runner(melspectrogram=x).values()
    sess = ort.InferenceSession(str(MINI), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"melspectrogram": x})
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


def test_liteRT_rows_are_in_the_verification(converted):
    meta = json.loads((converted / "model.json").read_text())
    rows = [c for c in meta["verification"]["checks"] if c["onednn"] == LABEL]
    assert sorted(c["batch"] for c in rows) == [1, 3, 64] and all(c["ok"] for c in rows)
    assert meta["tflite"] == {"written": True, "unsupported": []}
    assert "tflite" in json.loads((converted / "model.essentia.json").read_text())["model_types"]


def test_the_liteRT_check_can_fail(converted):
    x = np.random.default_rng(1).standard_normal((2, 128, 96)).astype(np.float32)
    sess = ort.InferenceSession(str(MINI), providers=["CPUExecutionProvider"])
    (want,) = sess.run(None, {"melspectrogram": x})
    feeds, variants = {(2, 0): {"melspectrogram": x}}, [{}]
    good = check_tflite(converted / "model.tflite", feeds, {(2, 0): {"output_0": want}}, ["output_0"], variants,
                        1e-4, 1e-3, {})
    bad = check_tflite(converted / "model.tflite", feeds, {(2, 0): {"output_0": want * 1.01 + 1e-3}}, ["output_0"],
                       variants, 1e-4, 1e-3, {})
    assert good[0].ok and not bad[0].ok


def test_op_outside_tflite_builtins_is_listed_and_the_pb_written(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["h"], name="erf_node"),
                               helper.make_node("Relu", ["h"], ["y"], name="relu_node")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "erf.onnx")
    code, text = run("convert", str(tmp_path / "erf.onnx"), "-o", str(tmp_path / "out"), "--tflite")
    assert code == 0, text
    flat = " ".join(text.split())
    assert "model.tflite not written" in flat and "Erf (node 'erf_node" in flat
    assert (tmp_path / "out" / "model.pb").exists() and not (tmp_path / "out" / "model.tflite").exists()
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["tflite"]["written"] is False and meta["tflite"]["unsupported"][0]["op"] == "Erf"
