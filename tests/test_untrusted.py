"""Untrusted SavedModels: doctor and bench list file/code ops from the protobufs and refuse without --trust.

The model writes a file outside its temp folder when called; the proof is that the file never appears unless the
model is actually run (which the last step does on purpose, to show the op is live).
"""

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import tensorflow as tf

from graphport.cli import main


class _Writer(tf.Module):
    def __init__(self, target: str):
        self.target = target

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        tf.io.write_file(self.target, "written by an untrusted model")
        return {"y": x * 2.0}


@pytest.fixture
def writer(tmp_path):
    target = Path(tmp_path.parent) / f"graphport-untrusted-{uuid.uuid4().hex}.txt"  # outside the model's folder
    m = _Writer(str(target))
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.__call__})
    yield tmp_path / "sm", target
    target.unlink(missing_ok=True)


@pytest.mark.parametrize("argv", [["bench", "{sm}", "--backends", "tf2,session,capi", "--batch-sizes", "1",
                                   "--repeat", "1"],
                                  ["bench", "{sm}", "--batch", "auto", "--backends", "session"],
                                  ["doctor", "{sm}", "--measure"],
                                  ["doctor", "{sm}", "--fix", "-o", "{out}"]])
def test_refused_without_trust_and_nothing_written(writer, tmp_path, capsys, argv):
    sm, target = writer
    rc = main([a.format(sm=sm, out=tmp_path / "out") for a in argv])
    out = " ".join(capsys.readouterr().out.split())
    assert rc == 2 and "WriteFile" in out and "--trust" in out
    assert not target.exists() and not (tmp_path / "out").exists()


def test_doctor_analysis_lists_the_op_without_running_it(writer, capsys):
    sm, target = writer
    assert main(["doctor", str(sm)]) == 0
    assert "WriteFile" in capsys.readouterr().out and not target.exists()


def test_the_op_is_live_when_the_model_runs(writer):
    """Control: the same model, run on purpose, does write the file (so the refusals above are what kept it out)."""
    sm, target = writer
    code = f"import tensorflow as tf; tf.saved_model.load({str(sm)!r}).signatures['serving_default'](tf.ones([1, 4]))"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    assert target.exists()
