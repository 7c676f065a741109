"""Run converted models inside Essentia (libtensorflow 2.5 C API), the host whose slow loads graphport exists to fix.

essentia-tensorflow bundles its own libtensorflow, which clashes with the `tensorflow` wheel in one process, and
its wheel is cp311 only. So Essentia lives in a venv of its own, created on demand (CI machines start fresh), and
every model runs in a subprocess (`essentia_worker.py`) that can be killed when a load takes minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from graphport.core.errors import EssentiaUnavailable
from graphport.runtime.venvs import ensure_venv, venv_dir

ESSENTIA_REQUIREMENT = "essentia-tensorflow==2.1b6.dev1389"
ESSENTIA_VERSION = ESSENTIA_REQUIREMENT.split("==")[1]
VENV_ENV_VAR = "GRAPHPORT_ESSENTIA_VENV"
WORKER = Path(__file__).with_name("essentia_worker.py")


def essentia_venv_dir() -> Path:
    """Where the Essentia venv lives: $GRAPHPORT_ESSENTIA_VENV, else ~/.cache/graphport/essentia-venv."""
    return venv_dir("essentia-venv", VENV_ENV_VAR)


def ensure_essentia_python(install_timeout: float = 1800.0) -> Path:
    """Return the python of a venv holding essentia-tensorflow, creating it (python3.11 -m venv + pip) if missing."""
    return ensure_venv(essentia_venv_dir(), [ESSENTIA_REQUIREMENT], "essentia-tensorflow", ESSENTIA_VERSION,
                       EssentiaUnavailable, install_timeout)


def essentia_run(model_path: str | os.PathLike, input_name: str, output_name: str, batches: list[np.ndarray],
                 timeout: float, *, steady_runs: int = 3, python: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, squeeze: bool = True) -> dict:
    """Load `model_path` (.pb file or SavedModel dir) in Essentia's TensorflowPredict and run each batch.

    `input_name`/`output_name` are C API op names (model.json: pb op or saved_model tensor). Returns a dict with
    ok, timed_out, stage (how far the worker got), import_s, load_s, first_run_s, steady_s (one median per batch),
    outputs (one array per batch, as Essentia returns it, e.g. [B,1,1,N] for a [B,N] output), wall_s, error.
    See essentia_worker.py for what each timing covers. A run past `timeout` is killed, never awaited.
    The worker runs with TF_ENABLE_ONEDNN_OPTS=0 unless `env` says otherwise (see the note below). `squeeze` is
    TensorflowPredict's own parameter: Essentia's 4-D Pool tensor loses its singleton dims to fit a [B,128,96]
    input; a graph whose input is 4-D itself ([B,128,96,1], Keras's layout) needs it off.
    """
    python = Path(python) if python else ensure_essentia_python()
    run_env = dict(os.environ)
    run_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Not inherited: whatever a TF 2.21 host chose, Essentia's libtensorflow 2.5 with oneDNN on returns garbage
    # from a plain SAME stride-2 Conv2D (max abs ~2e5 on a 3x3 conv) and can die of SIGFPE. Its default is off,
    # which is what Essentia users get; pass env= to override.
    run_env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    run_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="graphport-essentia-") as tmp:
        job_dir = Path(tmp)
        paths = []
        for i, batch in enumerate(batches):
            paths.append(str(job_dir / f"in_{i}.npy"))
            np.save(paths[-1], np.asarray(batch, dtype=np.float32))
        job = {"model": str(Path(model_path).absolute()), "input": input_name, "output": output_name,
               "batches": paths, "steady_runs": steady_runs, "squeeze": squeeze}
        (job_dir / "job.json").write_text(json.dumps(job))
        start = time.perf_counter()
        # Own process group: on timeout the whole worker tree is killed, so the call never hangs.
        proc = subprocess.Popen([str(python), str(WORKER), str(job_dir)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=run_env, start_new_session=True)
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        wall = time.perf_counter() - start
        result = _read_json(job_dir / "result.json") or _read_json(job_dir / "progress.json") or {"stage": "start"}
        result.update(timed_out=timed_out, wall_s=wall, returncode=proc.returncode, model=job["model"])
        result["ok"] = not timed_out and proc.returncode == 0 and result.get("stage") == "done"
        result["outputs"] = [np.load(job_dir / f"out_{i}.npy") for i in range(len(batches))
                             if (job_dir / f"out_{i}.npy").exists()]
        if timed_out:
            result["error"] = f"timed out after {timeout:.0f} s during stage '{result.get('stage')}'"
        elif not result["ok"]:
            text = (stderr or stdout).strip()
            text = text if len(text) <= 2400 else f"{text[:800]}\n[...]\n{text[-1600:]}"
            result["error"] = f"worker exited with {proc.returncode}: {text}"
        return result


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def host_op_name(tensor: str) -> str:
    """Essentia takes op names: 'output_0' for 'output_0:0', but 'PartitionedCall:1' keeps its output index."""
    return tensor.removesuffix(":0")


def artifact_names(out_dir: str | os.PathLike, artifact: str) -> tuple[Path, str, str]:
    """(model path, input op, output op) a host passes for graphport's `pb` or `saved_model`, read from model.json."""
    from graphport.core import model_json

    meta = model_json.read(out_dir)
    inp, out = meta["inputs"][0], meta["outputs"][0]
    return model_json.artifact_path(out_dir, artifact), host_op_name(inp[artifact]["tensor"]), \
        host_op_name(out[artifact]["tensor"])

