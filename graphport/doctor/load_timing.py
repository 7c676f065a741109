"""`--measure`: time the real import in subprocesses that are killed at a timeout (old-TF loads take minutes).

Backends: `capi` (TF 2.21 C API, what C/C++ hosts call), `session` (tf.compat.v1 graph mode) and `essentia`
(libtensorflow 2.5, the old refiner) where its venv is available.
"""

from __future__ import annotations

import numpy as np

from graphport.runtime.child import run_child
from graphport.runtime.essentia_host import essentia_run, essentia_venv_dir
from graphport.runtime.tf_model import LoadedModel

_CAPI = """
import time
from graphport.runtime.capi import CAPISession, lib
lib()
t = time.perf_counter(); CAPISession({path!r}).close(); print('{{"seconds": %r}}' % (time.perf_counter() - t))
"""
_SESSION = """
import time
import tensorflow as tf
p = {path!r}
g = tf.Graph()
t = time.perf_counter()
with g.as_default(), tf.compat.v1.Session(graph=g) as s:
    if {is_dir!r}:
        tf.compat.v1.saved_model.loader.load(s, {tags!r}, p)
    else:
        gd = tf.compat.v1.GraphDef(); gd.ParseFromString(open(p, 'rb').read()); tf.graph_util.import_graph_def(gd)
print('{{"seconds": %r}}' % (time.perf_counter() - t))
"""


def _timed(code: str, timeout: float) -> tuple[float, str]:
    """Seconds the load itself took (printed by the child, so TF's import is not counted), and a note."""
    res = run_child(["-c", code], timeout, {"TF_CPP_MIN_LOG_LEVEL": "3"})
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
    out = [("capi", *_timed(_CAPI.format(path=path), timeout)),
           ("session", *_timed(_SESSION.format(path=path, is_dir=is_dir, tags=tags), timeout))]
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
