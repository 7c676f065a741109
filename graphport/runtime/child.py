"""Run a measurement in a fresh Python process with a timeout, and read the JSON object it prints last.

`bench`, `profile` and `doctor --measure` time loads that can take minutes (old-TF hosts) or crash (oneDNN
kernels): each one runs in a child that is killed at its timeout, and whatever happens comes back as one result
instead of an exception or a hang.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class ChildResult:
    value: dict | None  # the last JSON object the child printed on stdout
    error: str  # "" when `value` came back; else one line: timed out, killed by a signal, or its last stderr line
    stderr: str
    timed_out: bool = False


def run_child(args: list[str], timeout: float, env: dict[str, str] | None = None,
              python: str | os.PathLike | None = None) -> ChildResult:
    """Run `python ARGS...` (e.g. `["-m", "graphport.runtime.measure", job]`) with `env` added to ours; `python` is
    this interpreter unless another host's venv is named (graphport.runtime.tf_hosts)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    try:
        proc = subprocess.run([str(python or sys.executable), *args], capture_output=True, text=True, timeout=timeout,
                              env=full_env, check=False)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return ChildResult(None, f"did not finish in {timeout:g} s (killed)", err, timed_out=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return ChildResult(json.loads(lines[-1]), "", proc.stderr)
    if proc.returncode < 0:
        why = f"crashed ({signal.Signals(-proc.returncode).name})"
    else:
        last = (proc.stderr.strip().splitlines() or ["exited without a result"])[-1]
        why = re.sub(r"^graphport\.[\w.]+: ", "", last)[:300]  # our own errors read as their message
    return ChildResult(None, why, proc.stderr)
