"""`--measure`: time the real import in subprocesses that are killed at a timeout (old-TF loads take minutes).

Backends: `capi` (TF 2.21 C API, what C/C++ hosts call), `session` (tf.compat.v1 graph mode) and `essentia`
(libtensorflow 2.5, the old refiner) where its venv is available.
"""

from __future__ import annotations

import json

import numpy as np

from graphport.runtime.child import run_child
from graphport.runtime.essentia_host import essentia_run, essentia_venv_dir
from graphport.runtime.tf_model import LoadedModel


def _timed(job: dict, timeout: float) -> tuple[float, str]:
    """Seconds the load itself took (timed in the child, so TF's import is not counted), and a note."""
    res = run_child(["-m", "graphport.runtime.measure", json.dumps({"kind": "load_seconds", **job})], timeout,
                    {"TF_CPP_MIN_LOG_LEVEL": "3"})
    if res.timed_out:
        return timeout, f"(killed at the {timeout:.0f} s timeout)"
    if res.value is None:
        return float("nan"), f"(failed: {res.error})"
    return res.value["seconds"], ""


def measure(model: LoadedModel, timeout: float = 60.0) -> list[tuple[str, float, str]]:
    """(backend, seconds, note) per backend: the import/load alone, timed inside a killable subprocess."""
    path = str(model.path)
    is_dir = model.kind == "saved_model"
    tags = model.tag.split(",") if model.tag else ["serve"]
    out = [(backend, *_timed({"path": path, "backend": backend, "is_dir": is_dir, "tags": tags}, timeout))
           for backend in ("capi", "session")]
    if not (essentia_venv_dir() / "bin" / "python").exists():
        out.append(("essentia", float("nan"), "(no Essentia venv: skipped)"))
        return out
    if model.signature is not None:
        key, tensor = next(iter(model.signature.inputs.items()))
        dims = model.signature.input_shapes.get(key)
        out_tensor = next(iter(model.signature.outputs.values()))
    else:  # a .pb: first Placeholder in, first sink out
        node = next(n for n in model.graph_def.node if n.op == "Placeholder")
        tensor, dims = node.name, [d.size for d in node.attr["shape"].shape.dim]
        consumed = {i.lstrip("^").split(":")[0] for n in model.graph_def.node for i in n.input}
        out_tensor = next(n.name for n in model.graph_def.node if n.name not in consumed and n.op != "Const")
    shape = [1 if d is None or d < 0 else d for d in dims or [1]]
    batch = np.zeros([shape[0], 1, *shape[1:]], np.float32)
    r = essentia_run(path, tensor.split(":")[0], out_tensor.split(":")[0], [batch], timeout=timeout)
    note = "" if r["ok"] else f"({r.get('error', '')[:200]})"
    out.append(("essentia", r.get("load_s") or r["wall_s"], note))
    return out
