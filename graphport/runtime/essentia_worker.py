"""Runs one model in Essentia's TensorflowPredict; started by `essentia_host.essentia_run` in Essentia's own venv.

This file is run by path with the Essentia venv's python. It must never import `tensorflow` or `graphport`
(graphport imports tensorflow): essentia-tensorflow bundles libtensorflow 2.5, which clashes with the TF wheel.

Usage: python essentia_worker.py JOB_DIR. JOB_DIR/job.json holds
{"model": path, "input": op, "output": op, "batches": [npy paths], "steady_runs": n}.
The worker writes JOB_DIR/progress.json after every stage (so a timed-out run still says how far it got),
JOB_DIR/out_<i>.npy for every batch, and JOB_DIR/result.json at the end.

Timings (seconds, time.perf_counter):
- import_s: `import essentia.standard` (loads libtensorflow 2.5).
- load_s: constructing TensorflowPredict with its parameters. Essentia's constructor runs configure(), which
  imports the graph (TF_GraphImportGraphDef for a .pb, TF_LoadSessionFromSavedModel for a SavedModel) and
  creates the session: this is where onnx-tf graphs spend minutes in shape refinement.
- first_run_s: the first compute() (batch 0). TF builds and optimises the executor (grappler) lazily here,
  so it is reported apart from load_s, not folded into it.
- steady_s[i]: median of `steady_runs` further compute() calls on batch i, after its first call.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def _write(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main(job_dir: str) -> int:
    with open(os.path.join(job_dir, "job.json")) as f:
        job = json.load(f)
    progress = os.path.join(job_dir, "progress.json")
    state: dict = {"stage": "import"}
    _write(progress, state)

    t = time.perf_counter()
    import essentia
    import essentia.standard as es
    import numpy as np

    essentia.log.infoActive = False
    state.update(import_s=time.perf_counter() - t, essentia_version=essentia.__version__, stage="load")
    _write(progress, state)

    model, inp, out = job["model"], job["input"], job["output"]
    source = {"savedModel": model} if os.path.isdir(model) else {"graphFilename": model}
    t = time.perf_counter()
    predict = es.TensorflowPredict(**source, inputs=[inp], outputs=[out], squeeze=job.get("squeeze", True))
    state.update(load_s=time.perf_counter() - t, stage="run", steady_s=[], output_shapes=[])
    _write(progress, state)

    for i, path in enumerate(job["batches"]):
        x = np.ascontiguousarray(np.load(path), dtype=np.float32)
        while x.ndim < 4:  # Pool tensors are 4-D: [B,128,96] -> [B,1,128,96]; squeeze=True drops the 1 again.
            x = np.expand_dims(x, 1)
        pool = essentia.Pool()
        pool.set(inp, x)
        t = time.perf_counter()
        y = np.array(predict(pool)[out])
        if i == 0:
            state["first_run_s"] = time.perf_counter() - t
        times = []
        for _ in range(int(job.get("steady_runs", 0))):
            t = time.perf_counter()
            predict(pool)
            times.append(time.perf_counter() - t)
        state["steady_s"].append(statistics.median(times) if times else None)
        state["output_shapes"].append(list(y.shape))
        np.save(os.path.join(job_dir, f"out_{i}.npy"), y)
        _write(progress, state)

    state["stage"] = "done"
    _write(os.path.join(job_dir, "result.json"), state)
    _write(progress, state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
