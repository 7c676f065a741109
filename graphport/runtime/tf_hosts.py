"""TensorFlow C API hosts of other versions than the installed wheel, each in a venv of its own.

Why: Essentia's upstream moved its libtensorflow to 2.17, while graphport runs on 2.21 and the installable Essentia
wheel bundles 2.5. A graph is proven in a host version by running it there: the `capi` backend (ctypes on the
wheel's libtensorflow_cc.so.2) needs only numpy, so the venv's python runs graphport's own runtime from this
checkout (PYTHONPATH), and `bench --backends capi@2.17` or `host_check` time and compare it like any backend.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphport.core.errors import GraphportError
from graphport.runtime.child import run_child
from graphport.runtime.venvs import ensure_venv, venv_dir


@dataclass(frozen=True)
class TFHost:
    requirement: str  # what pip installs
    dist: str
    version: str
    venv: str  # ~/.cache/graphport/<venv>, or $<env_var>
    env_var: str


TF_HOSTS = {"2.17": TFHost("tensorflow-cpu==2.17.1", "tensorflow-cpu", "2.17.1", "tf217-venv", "GRAPHPORT_TF217_VENV")}
# a TF/absl log line of severity warning or error, in either format: "W0000 00:00:..." or "2026-... : W tensorflow/"
LOG_PROBLEM = re.compile(r"^(?:[EW]\d{4} |\S+ \S+: [EW] )", re.MULTILINE)


def split_backend(name: str) -> tuple[str, str | None]:
    """'capi@2.17' -> ('capi', '2.17'); 'capi' -> ('capi', None). Only the C API backend runs in another host."""
    backend, _, version = name.partition("@")
    if version and (backend != "capi" or version not in TF_HOSTS):
        raise GraphportError(f"unknown host '{name}': other TF versions run through the C API, as "
                             f"{', '.join(f'capi@{v}' for v in TF_HOSTS)}.")
    return backend, version or None


def host_python(version: str) -> Path:
    """The python of TF `version`'s venv, built (tensorflow-cpu, numpy < 2) on first use."""
    host = TF_HOSTS[version]
    return ensure_venv(venv_dir(host.venv, host.env_var), [host.requirement, "numpy<2"], host.dist, host.version)


def host_env() -> dict[str, str]:
    """The venv runs graphport's runtime from this installation."""
    return {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}


@dataclass
class HostCheck:
    """One artifact run in one host: did it load and run, how long the load took, outputs, and the log lines of
    severity warning or error the host printed."""

    ok: bool
    error: str
    load_s: float | None
    tf_version: str | None
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    log_problems: list[str]


def host_check(artifact: Path, version: str | None, batch: int, onednn: bool, timeout: float = 600.0) -> HostCheck:
    """Load `artifact` (a graphport folder's model.pb or saved_model/) through the C API of TF `version` (None: the
    installed wheel) in a fresh process, and run it once at `batch` on seeded inputs."""
    with tempfile.TemporaryDirectory(prefix="graphport-host-") as tmp:
        out = Path(tmp) / "run.npz"
        job = json.dumps({"kind": "host_check", "path": str(artifact), "batch": batch, "out": str(out)})
        env = {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "0"}
        python = host_python(version) if version else None
        res = run_child(["-m", "graphport.runtime.measure", job], timeout, {**env, **host_env()}, python=python)
        problems = [line for line in res.stderr.splitlines() if LOG_PROBLEM.match(line)]
        if res.value is None:
            return HostCheck(False, res.error, None, None, {}, {}, problems)
        with np.load(out) as saved:
            arrays = {k: saved[k] for k in saved.files}
    feeds = {k.removeprefix("in:"): v for k, v in arrays.items() if k.startswith("in:")}
    outputs = {k.removeprefix("out:"): v for k, v in arrays.items() if k.startswith("out:")}
    return HostCheck(True, "", res.value["load_s"], res.value["tf_version"], feeds, outputs, problems)
