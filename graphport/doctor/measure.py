"""`--measure`: time the real import in subprocesses that are killed at a timeout (old-TF loads take minutes).

Backends: `capi` (TF 2.21 C API, what C/C++ hosts call), `session` (tf.compat.v1 graph mode) and `essentia`
(libtensorflow 2.5, the old refiner) where its venv is available.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from graphport.doctor.load import LoadedModel

_CAPI = "from graphport.runtime.capi import CAPISession; CAPISession({path!r}).close()"
_SESSION = """
import tensorflow as tf
p = {path!r}
g = tf.Graph()
with g.as_default(), tf.compat.v1.Session(graph=g) as s:
    if {is_dir!r}:
        tf.compat.v1.saved_model.loader.load(s, {tags!r}, p)
    else:
        gd = tf.compat.v1.GraphDef(); gd.ParseFromString(open(p, 'rb').read()); tf.graph_util.import_graph_def(gd)
"""


def _timed(code: str, timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env={"TF_CPP_MIN_LOG_LEVEL": "3", **__import__("os").environ}, check=False)
    except subprocess.TimeoutExpired:
        return timeout, f"(killed at the {timeout:.0f} s timeout)"
    wall = time.perf_counter() - start
    return wall, "" if proc.returncode == 0 else f"(failed: {proc.stderr.strip().splitlines()[-1:]})"


def measure(model: LoadedModel, timeout: float = 60.0) -> list[tuple[str, float, str]]:
    """(backend, seconds, note) per backend; seconds include starting Python and importing TF."""
    path = str(model.path)
    is_dir = model.kind == "saved_model"
    tags = model.tag.split(",") if model.tag else ["serve"]
    out = [("capi", *_timed(_CAPI.format(path=path), timeout)),
           ("session", *_timed(_SESSION.format(path=path, is_dir=is_dir, tags=tags), timeout))]
    try:
        from graphport.runtime.essentia_host import essentia_run, essentia_venv_dir
    except ImportError:
        return out
    if not (essentia_venv_dir() / "bin" / "python").exists() or model.signature is None:
        out.append(("essentia", float("nan"), "(no Essentia venv or no signature: skipped)"))
        return out
    (key, tensor), = list(model.signature.inputs.items())[:1]
    shape = [1 if d is None or d < 0 else d for d in model.signature.input_shapes.get(key) or [1]]
    batch = np.zeros([shape[0], 1, *shape[1:]], np.float32)
    out_tensor = next(iter(model.signature.outputs.values()))
    r = essentia_run(path, tensor.split(":")[0], out_tensor.split(":")[0], [batch], timeout=timeout)
    note = "" if r["ok"] else f"({r.get('error', '')[:200]})"
    out.append(("essentia", r.get("load_s") or r["wall_s"], note))
    return out
