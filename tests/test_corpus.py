"""The malformed-input corpus (tests/corpus/, written by make_corpus.py): each file gets its own clear error and
exit code 2 from `graphport convert`, with no traceback; the one well-formed external-data model converts."""

import subprocess
import sys
from pathlib import Path

import pytest

from graphport.cli import console, main

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = {
    "truncated.onnx": "truncated or corrupt protobuf",
    "bitflipped.onnx": "truncated or corrupt protobuf",
    "not_protobuf.onnx": "not a readable ONNX model",
    "empty.onnx": "is empty (0 bytes)",
    "future_opset.onnx": "uses opset 99; graphport knows opsets up to",
    "opset_without_op.onnx": "No Op registered for Gelu with domain_version of 17",
    "no_default_opset.onnx": "imports no default-domain",
    "unknown_domain.onnx": "com.example.Mystery (node 'Mystery_0', opset 1): no converter",
    "cyclic.onnx": "the graph has a cycle",
    "dangling_input.onnx": "reads 'nowhere', which no node, graph input or initializer defines",
    "duplicate_names.onnx": "'y' has been used as output names multiple times",
    "initializer_shape_mismatch.onnx": "Inferred shape and existing shape differ",
    "external_absolute/model.onnx": "points its external data at '/etc/hostname', outside the model's folder",
    "external_dotdot/model.onnx": "points its external data at '../outside.bin', outside the model's folder",
    "external_symlink/model.onnx": "points its external data at 'weights.bin', outside the model's folder",
    "external_missing/model.onnx": "external data file 'weights.bin' of tensor 'w' is missing",
    "external_short/model.onnx": "is shorter than tensor 'w' needs",
    "a_directory.onnx": "is a directory",
}


def _convert(path: Path, out: Path) -> tuple[int, str]:
    with console.capture() as cap:
        rc = main(["convert", str(path), "-o", str(out), "--batch-sizes", "1,2"])
    return rc, " ".join(cap.get().split())


def test_corpus_is_what_the_generator_writes():
    written = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file() or p.is_symlink()}
    assert set(EXPECTED) - {"a_directory.onnx"} <= written


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_clear_error_and_exit_2(name, tmp_path):
    before = {p: p.read_bytes() for p in CORPUS.rglob("*") if p.is_file() and not p.is_symlink()}
    rc, msg = _convert(CORPUS / name, tmp_path / "out")
    assert rc == 2, msg
    assert msg.startswith("error:") and EXPECTED[name] in msg and "Traceback" not in msg, msg
    assert not (tmp_path / "out").exists()
    assert before == {p: p.read_bytes() for p in before}  # inputs are never modified


def test_external_weights_beside_the_model_convert(tmp_path):
    rc, msg = _convert(CORPUS / "external_ok" / "model.onnx", tmp_path / "out")
    assert rc == 0, msg
    assert (tmp_path / "out" / "model.pb").exists() and (tmp_path / "out" / "saved_model").is_dir()


def test_no_traceback_from_the_real_command(tmp_path):
    """The installed entry point prints one paragraph, not a traceback (the in-process tests cover the rest)."""
    run = subprocess.run([sys.executable, "-m", "graphport", "convert", str(CORPUS / "cyclic.onnx"), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stdout + run.stderr and "error:" in run.stdout
