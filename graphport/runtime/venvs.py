"""Hosts that live in a venv of their own, created on demand: Essentia (libtensorflow 2.5) and TF 2.17's C API.

Why: essentia-tensorflow's bundled libtensorflow and a second TensorFlow wheel clash in one process, and proving a
graph in TF 2.17 (Essentia's upstream) needs that wheel beside the 2.21 one graphport runs on. CI machines start
fresh, so each venv is built when first needed: in a temporary sibling directory renamed into place, under a file
lock, so that concurrent callers (parallel test workers) never see or use a half-installed venv.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from graphport.core.errors import GraphportError


def venv_dir(name: str, env_var: str) -> Path:
    """$ENV_VAR, else ~/.cache/graphport/NAME."""
    env = os.environ.get(env_var)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graphport" / name


def installed_version(python: Path, dist: str) -> str | None:
    """The version of distribution `dist` in `python`'s env, read from metadata (importing it can take seconds)."""
    if not python.exists():
        return None
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        proc = subprocess.run([str(python), "-c", code], check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def python311(error: type[GraphportError] = GraphportError) -> str:
    """A Python 3.11 to build venvs with: the cp311 wheels (essentia-tensorflow) need it; `error` if there is none."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise error("the host venvs need python3.11 (essentia-tensorflow ships cp311 wheels only), and no "
                    "python3.11 was found.")
    return found


def ensure_venv(venv: Path, requirements: list[str], dist: str, version: str,
                error: type[GraphportError] = GraphportError, install_timeout: float = 1800.0) -> Path:
    """The python of `venv` with `dist==version` installed (from `requirements`), building the venv if missing."""
    python = venv / "bin" / "python"
    if installed_version(python, dist) == version:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version(python, dist) == version:  # another process built it while we waited
            return python
        tmp = Path(tempfile.mkdtemp(prefix=f".{venv.name}.tmp-", dir=venv.parent))
        try:
            steps = [[python311(error), "-m", "venv", str(tmp)],
                     [str(tmp / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                      *requirements]]
            for cmd in steps:
                proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=install_timeout)
                if proc.returncode != 0:
                    raise error(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-3000:]}")
            if venv.exists():  # a broken or outdated venv: move it aside, then swap in the new one
                old = Path(tempfile.mkdtemp(prefix=f".{venv.name}.old-", dir=venv.parent))
                os.rename(venv, old / "venv")
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, venv)  # venv's bin/python finds its prefix from pyvenv.cfg, so a rename is safe
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if installed_version(python, dist) != version:
        raise error(f"{venv} does not hold {dist}=={version} after installing it.")
    return python
