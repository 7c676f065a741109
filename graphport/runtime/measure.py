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

import numpy as np

OTHER_DIM = 16


def feeds_for(inputs, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random feeds: the leading unknown dim is the batch, other unknown dims get a fixed size."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d > 0 else (batch if axis == 0 else OTHER_DIM)
                 for axis, d in enumerate(spec.shape or [None])]
        if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0 and spec.shape[0] != batch:
            raise ValueError(f"input '{spec.name}' has a fixed batch of {spec.shape[0]}")
        dtype = np.dtype(spec.dtype)
        feeds[spec.name] = (rng.standard_normal(shape) if dtype.kind == "f" else rng.integers(0, 10, shape))\
            .astype(dtype)
    return feeds


def timed_runs(session, feeds: dict[str, np.ndarray], repeat: int) -> list[float]:
    """Wall time of each of `repeat` runs (the caller does any warm-up)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session.run(feeds)
        times.append(time.perf_counter() - t0)
    return times


def measure(path: str, backend: str, batch_sizes: list[int], repeat: int, auto_budget: int | None = None,
            auto: bool = False) -> dict:
    from graphport.runtime.backends import load, warm_up

    warm_up(backend)
    t0 = time.perf_counter()
    sess = load(path, backend)
    load_s = time.perf_counter() - t0
    choice = None
    if auto:
        from graphport.batching import pick_batch_size

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
    result = {"load_s": load_s, "first_run_s": first_s, "first_batch": first_batch, "steady": steady}
    if choice is not None:
        result["auto_batch"] = {"batch": choice.batch, "explain": choice.explain(), "peak_bytes": choice.peak_bytes}
    return result


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    print(json.dumps(measure(job["path"], job["backend"], job["batch_sizes"], job["repeat"], job.get("budget"),
                             job.get("auto", False))), flush=True)
