"""What the real `graphport` process prints: no TF/absl/oneDNN log lines on stderr unless --verbose, and tables
that are not cut to 80 columns when stdout is a pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from graphport.cli._quiet import quiet_stderr

EXAMPLE = Path(__file__).parents[1] / "graphport" / "examples" / "example_effnet.onnx"
NOISE = re.compile(r"absl::InitializeLog|^[IWE]\d{4} |oneDNN custom operations|cpu_feature_guard|rebuild TensorFlow|"
                   r"^(INFO|WARNING|ERROR):(absl|tensorflow):", re.MULTILINE)


def _graphport(*argv: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, stdout piped; oneDNN forced on so its banner appears on every CPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TF_CPP_MIN_LOG_LEVEL")}
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return subprocess.run([sys.executable, "-m", "graphport", *argv], capture_output=True, text=True, env=env,
                          timeout=900, check=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cli_output") / "out"
    return out, _graphport("convert", str(EXAMPLE), "-o", str(out), "--batch-sizes", "1,3")


def test_filter_drops_log_lines_and_keeps_the_rest(capfd):
    lines = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796161512.338434   27918 port.cc:153] oneDNN custom operations are on.\n",
             b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with it.\n",
             b"E0000 00:00:1796161512.338434   27918 graph.cc:12] op not registered\n",
             b"WARNING:absl:Found untraced functions\n",
             b"[2026-12-01 22:09:48,846 E 14674 14674] core_worker.cc:2465: Actor with class name: 'MapWorker'\n",
             b"a line of ours\n",
             b"F0101 12:00:00.000000   27918 check.cc:1] Check failed: the crash reason stays\n"]
    with quiet_stderr():
        for line in lines:
            os.write(2, line)
    assert capfd.readouterr().err.splitlines() == ["a line of ours", lines[-1].decode().rstrip()]
    with quiet_stderr(enabled=False):
        os.write(2, lines[1])
    assert "oneDNN" in capfd.readouterr().err


def test_convert_prints_no_tf_log_lines(converted):
    out, run = converted
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not NOISE.search(run.stderr), run.stderr
    assert (out / "model.pb").exists()


def test_piped_tables_are_not_cut():
    """A bench table wider than 80 columns keeps every cell whole when stdout is a pipe (was `onnxrun…`)."""
    run = _graphport("bench", str(EXAMPLE), "--backends", "onnxruntime", "--batch-sizes", "1,2,3,4,5,6,7,8",
                     "--repeat", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not NOISE.search(run.stderr), run.stderr
    assert "…" not in run.stdout
    header = next(ln for ln in run.stdout.splitlines() if "B=8" in ln)
    assert len(header) > 80 and "patches/s" in header
    assert any("example_effnet.onnx" in ln and "onnxruntime" in ln for ln in run.stdout.splitlines())


def test_verbose_lets_the_log_lines_through(converted):
    out, _ = converted
    quiet = _graphport("doctor", str(out / "model.pb"))
    assert quiet.returncode == 0, quiet.stdout[-3000:] + quiet.stderr[-3000:]
    assert not NOISE.search(quiet.stderr), quiet.stderr
    loud = _graphport("doctor", str(out / "model.pb"), "--verbose")
    assert loud.returncode == 0 and "oneDNN custom operations are on" in loud.stderr
