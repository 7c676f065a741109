"""Bad input: a clear one-paragraph error, exit code 2, no traceback, nothing written, input untouched."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphport.cli import main
from graphport.conversion.bundled_example import EXAMPLE


def _convert(capsys, model, out):
    rc = main(["convert", str(model), "-o", str(out)])
    err = capsys.readouterr().out
    return rc, " ".join(err.split())


def _tiny(nodes, opset=17, extra_opsets=(), inits=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


@pytest.mark.parametrize("content, needle", [
    (EXAMPLE.read_bytes()[:20000], "truncated or corrupt"),
    (b"", "empty"),
    (b"hello, this is not a model\n" * 10, "not a readable ONNX model"),
])
def test_unreadable_files(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    rc, msg = _convert(capsys, path, tmp_path / "out")
    assert rc == 2 and needle in msg and "Traceback" not in msg
    assert not (tmp_path / "out").exists()
    assert path.read_bytes() == content


def test_directory_and_missing_file(tmp_path, capsys):
    assert _convert(capsys, tmp_path, tmp_path / "out")[0] == 2
    rc, msg = _convert(capsys, tmp_path / "nope.onnx", tmp_path / "out")
    assert rc == 2 and "does not exist" in msg


def test_checker_failure(tmp_path, capsys):
    model = _tiny([helper.make_node("Relu", ["x"], ["y"], alpha=1.0)])  # Relu has no attribute alpha
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    rc, msg = _convert(capsys, path, tmp_path / "out")
    assert rc == 2 and "checker" in msg


def test_output_type_contradicting_its_op_is_the_models_fault(tmp_path, capsys):
    """NonMaxSuppression returns int64 indices; a model declaring them float is invalid (ORT refuses to load it)."""
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 10, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1, 10])
    selected = helper.make_tensor_value_info("selected", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("NonMaxSuppression", ["boxes", "scores", "max"], ["selected"],
                                                name="nms")], "g", [boxes, scores], [selected],
                              [numpy_helper.from_array(np.array([5], np.int64), "max")])
    path = tmp_path / "nms.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    before = path.read_bytes()
    rc, msg = _convert(capsys, path, tmp_path / "out")
    assert rc == 2, msg
    assert "NonMaxSuppression" in msg and "int64 inferred vs float32 declared" in msg
    assert "graphport bug" not in msg and "Traceback" not in msg
    assert not (tmp_path / "out").exists() and path.read_bytes() == before


def test_a_model_ort_refuses_is_a_user_error():
    """What the checker lets through and ORT will not load (here an op of an unknown domain) is named as ORT says it,
    and a missing ORT kernel points to --no-verify."""
    from graphport.core.errors import InvalidModel
    from graphport.runtime.reference import reference_session

    unknown = _tiny([helper.make_node("Foo", ["x"], ["y"], domain="com.example")],
                    extra_opsets=[helper.make_opsetid("com.example", 1)])
    with pytest.raises(InvalidModel, match=r"^the model is invalid: ONNX Runtime says .*Foo"):
        reference_session(unknown.SerializeToString())
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, ["batch", 4])
    no_kernel = helper.make_model(helper.make_graph([helper.make_node("Mod", ["x", "x"], ["y"], fmod=1)], "g", [x],
                                                    [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InvalidModel, match=r"cannot run this model.*Mod.*--no-verify"):
        reference_session(no_kernel.SerializeToString())


def test_unsupported_ops_are_all_listed(tmp_path, capsys):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
             helper.make_node("Foo", ["a"], ["b"], name="first_custom", domain="com.example"),
             helper.make_node("Bar", ["b"], ["y"], name="second_custom", domain="com.example")]
    model = _tiny(nodes, extra_opsets=[helper.make_opsetid("com.example", 1)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    rc, msg = _convert(capsys, path, tmp_path / "out")
    assert rc == 2
    assert "com.example.Foo (node 'first_custom', opset 1)" in msg
    assert "com.example.Bar (node 'second_custom', opset 1)" in msg
    assert "ok_relu" not in msg and not (tmp_path / "out").exists()


def _external_model(tmp_path, location):
    w = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    model = _tiny([helper.make_node("Add", ["x", "w"], ["y"])], inits=[w])
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "link.bin"])
def test_external_data_outside_model_folder(tmp_path, capsys, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(4, np.float32).tobytes())
    path = _external_model(tmp_path, location)
    (path.parent / "link.bin").symlink_to(tmp_path / "secret.bin")
    rc, msg = _convert(capsys, path, tmp_path / "out")
    assert rc == 2 and "outside the model's folder" in msg


def test_external_data_inside_folder_converts(tmp_path, capsys):
    path = _external_model(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(np.full(4, 2.0, np.float32).tobytes())
    rc, msg = _convert(capsys, path, tmp_path / "out")
    assert rc == 0, msg
    assert (tmp_path / "out" / "model.pb").exists()


def test_existing_output_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    rc, msg = _convert(capsys, EXAMPLE, out)
    assert rc == 2 and "--force" in msg
    assert (out / "mine.txt").read_text() == "keep me"


def test_cli_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    run = subprocess.run([sys.executable, "-m", "graphport", "convert", str(bad), "-o", str(tmp_path / "o")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "Traceback" not in run.stdout + run.stderr and "error:" in run.stdout
