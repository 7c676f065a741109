"""Write the malformed-input corpus next to this script: `python tests/corpus/make_corpus.py`.

Every file is small and deterministic; tests/test_corpus.py holds the error each one must produce (exit code 2).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).parent


def tiny(nodes=None, opset=17, inits=(), extra_opsets=(), inputs=None) -> onnx.ModelProto:
    """x[batch, 4] -> y[batch, 4], by default through Add with a weight initializer."""
    nodes = nodes or [helper.make_node("Add", ["x", "w"], ["y"])]
    inits = list(inits) or [numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(nodes, "corpus", inputs or [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    model.ir_version = 8
    return model


def raw(model: onnx.ModelProto) -> bytes:
    """Serialize without the checker, so that invalid models can be written at all."""
    return model.SerializeToString()


def external(location: str) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    return tiny(inits=[w])


def cases() -> dict[str, bytes]:
    good = raw(tiny())
    flipped = bytearray(good)
    for i in range(0, len(flipped), 7):  # every 7th byte's high bit: tags and lengths go wrong
        flipped[i] ^= 0x80
    relu = [helper.make_node("Relu", ["x"], ["y"])]
    return {
        "truncated.onnx": good[: len(good) // 2],
        "bitflipped.onnx": bytes(flipped),
        "not_protobuf.onnx": b"this is a text file, not an ONNX model\n" * 4,
        "empty.onnx": b"",
        "future_opset.onnx": raw(tiny(relu, opset=99)),
        "opset_without_op.onnx": raw(tiny([helper.make_node("Gelu", ["x"], ["y"])], opset=17)),  # Gelu is 20+
        "no_default_opset.onnx": raw(helper.make_model(
            helper.make_graph(relu, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])]),
            opset_imports=[helper.make_opsetid("com.example", 1)], ir_version=8)),
        "unknown_domain.onnx": raw(tiny([helper.make_node("Mystery", ["x"], ["y"], domain="com.example")],
                                        extra_opsets=[helper.make_opsetid("com.example", 1)])),
        "cyclic.onnx": raw(tiny([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Add", ["x", "a"], ["b"]),
                                 helper.make_node("Identity", ["b"], ["y"])])),
        "dangling_input.onnx": raw(tiny([helper.make_node("Add", ["x", "nowhere"], ["y"])])),
        "duplicate_names.onnx": raw(tiny([helper.make_node("Relu", ["x"], ["y"]),
                                          helper.make_node("Neg", ["x"], ["y"])])),
        "initializer_shape_mismatch.onnx": raw(tiny(inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])])),
        "external_absolute/model.onnx": raw(external("/etc/hostname")),
        "external_dotdot/model.onnx": raw(external("../outside.bin")),
        "external_symlink/model.onnx": raw(external("weights.bin")),
        "external_missing/model.onnx": raw(external("weights.bin")),
        "external_short/model.onnx": raw(external("weights.bin")),
        "external_short/weights.bin": np.arange(2, dtype=np.float32).tobytes(),
        "external_ok/model.onnx": raw(external("weights.bin")),
        "external_ok/weights.bin": np.arange(4, dtype=np.float32).tobytes(),
        "outside.bin": np.arange(4, dtype=np.float32).tobytes(),
        "a_directory.onnx/README": b"a directory named like a model: graphport must say so, not crash\n",
    }


def main() -> None:
    for old in HERE.iterdir():  # start clean: a stale symlink or file would change a case
        if old.is_dir() and old.name != "__pycache__":
            shutil.rmtree(old)
    for name, data in cases().items():
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    link = HERE / "external_symlink" / "weights.bin"
    link.unlink(missing_ok=True)
    os.symlink("../outside.bin", link)  # resolves inside the corpus but outside the model's folder


if __name__ == "__main__":
    main()
