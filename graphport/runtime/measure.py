"""One measurement in a fresh process: load a model with one backend, time load, first and steady inference.

`bench` runs this module as a subprocess per (model, backend, oneDNN setting), so every load is cold, a hung load
can be killed at its timeout, and TF's process-wide settings cannot leak between measurements.
usage: python -m graphport.runtime.measure JOB_JSON  (prints one JSON line)
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from graphport.runtime.batch_size import pick_batch_size, timed_runs
from graphport.runtime.feeds import feeds_for


def measure(path: str, backend: str, batch_sizes: list[int], repeat: int, auto_budget: int | None = None,
            auto: bool = False) -> dict:
    """Times in seconds: `startup_s` is library start-up (the backend's libraries, and reading the model's
    description, which for a bare .pb or SavedModel needs TF's Python protobufs), `load_s` the model load alone."""
    from graphport.runtime.backends import load, warm_up
    from graphport.runtime.model_info import resolve

    t0 = time.perf_counter()
    warm_up(backend)
    resolve(path, "saved_model" if backend == "tf2" else None)
    startup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sess = load(path, backend)
    load_s = time.perf_counter() - t0
    choice = None
    if auto:
        choice = pick_batch_size(sess, budget=auto_budget)
        batch_sizes = [choice.batch]
    first_batch = batch_sizes[0]
    feeds = feeds_for(sess.inputs, first_batch)
    t0 = time.perf_counter()
    sess.run(feeds)
    first_s = time.perf_counter() - t0
    steady = {}
    for b in batch_sizes:
        try:
            feeds = feeds_for(sess.inputs, b, seed=b)
        except ValueError as e:
            steady[str(b)] = {"error": str(e)}
            continue
        sess.run(feeds)
        times = timed_runs(sess, feeds, repeat)
        med = statistics.median(times)
        steady[str(b)] = {"median_s": med, "min_s": min(times), "max_s": max(times), "patches_per_s": b / med}
    sess.close()
    result = {"startup_s": startup_s, "load_s": load_s, "first_run_s": first_s, "first_batch": first_batch, "steady": steady}
    if choice is not None:
        result["auto_batch"] = {"batch": choice.batch, "explain": choice.explain(), "peak_bytes": choice.peak_bytes}
    return result


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(measure(job["path"], job["backend"], job["batch_sizes"], job["repeat"], job.get("budget"),
                             job.get("auto", False))), flush=True)
