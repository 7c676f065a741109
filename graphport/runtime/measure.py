"""The one child program for timing: a job measured in a fresh process, printed as one JSON line.

`bench`, `profile` and `doctor --measure` run this module through `runtime.child.run_child`, one process per
(model, backend, oneDNN setting), so every load is cold, a hung load can be killed at its timeout, and TF's
process-wide settings cannot leak between measurements. Jobs: "bench" (load, first and steady inference),
"load_phases" (profile's load breakdown), "load_seconds" (doctor's load alone) and "host_check" (a load and one
run in another TF host's venv, runtime/tf_hosts.py).
usage: python -m graphport.runtime.measure JOB_JSON
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from graphport.runtime.backends import load, warm_up
from graphport.runtime.batch_size import pick_batch_size, timed_runs
from graphport.runtime.feeds import feeds_for
from graphport.runtime.model_info import resolve


def measure(path: str, backend: str, batch_sizes: list[int], repeat: int, auto_budget: int | None = None,
            auto: bool = False, precision: str = "fp32") -> dict:
    """Times in seconds: `startup_s` is library start-up (the backend's libraries, and reading the model's
    description, which for a bare .pb or SavedModel needs TF's Python protobufs), `load_s` the model load alone."""
    t0 = time.perf_counter()
    warm_up(backend)
    resolve(path, "saved_model" if backend == "tf2" else None)
    startup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sess = load(path, backend, precision=precision)
    load_s = time.perf_counter() - t0
    choice = None
    if auto:
        choice = pick_batch_size(sess, budget=auto_budget)
        batch_sizes = [choice.batch]
    first_batch = batch_sizes[0]
    feeds = feeds_for(sess.info, first_batch)
    t0 = time.perf_counter()
    sess.run(feeds)
    first_s = time.perf_counter() - t0
    steady = {}
    for b in batch_sizes:
        try:
            feeds = feeds_for(sess.info, b, seed=b)
        except ValueError as e:
            steady[str(b)] = {"error": str(e)}
            continue
        sess.run(feeds)
        times = timed_runs(sess, feeds, repeat)
        med = statistics.median(times)
        steady[str(b)] = {"median_s": med, "min_s": min(times), "max_s": max(times), "patches_per_s": b / med}
    sess.close()
    result = {"startup_s": startup_s, "load_s": load_s, "first_run_s": first_s, "first_batch": first_batch,
              "steady": steady, "precision": sess.precision}
    if choice is not None:
        result["auto_batch"] = {"batch": choice.batch, "explain": choice.explain(), "peak_bytes": choice.peak_bytes}
    return result


def load_phases(path: str, backend: str) -> dict:
    """`profile`'s load breakdown: each load step timed separately (graph import, session, first run)."""
    import tensorflow as tf

    info = resolve(path, "saved_model" if backend == "tf2" else None)
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    if backend == "session" and info.kind == "pb":
        gd = tf.compat.v1.GraphDef()
        gd.ParseFromString(Path(info.path).read_bytes())
        g = tf.Graph()
        with g.as_default():
            tf.graph_util.import_graph_def(gd, name="")
        phases["graph_import_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        sess = tf.compat.v1.Session(graph=g)
        phases["session_create_s"] = time.perf_counter() - t1
        feeds = feeds_for(info, 1)
        tensors = {i.name: i.tensor for i in info.inputs}
        t1 = time.perf_counter()
        sess.run([o.tensor for o in info.outputs], {tensors[k]: v for k, v in feeds.items()})
        phases["first_run_s"] = time.perf_counter() - t1
    else:
        warm_up(backend)
        t0 = time.perf_counter()
        s = load(path, backend)
        phases["restore_or_import_and_session_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        s.run(feeds_for(s.info, 1))
        phases["first_run_s"] = time.perf_counter() - t1
    phases["total_s"] = time.perf_counter() - t0
    return phases


def load_seconds(path: str, backend: str, is_dir: bool, tags: list[str]) -> dict:
    """`doctor --measure`: the model's load alone (TF already imported), through the C API or through
    tf.compat.v1 (a SavedModel with the chosen tags, or a .pb's GraphDef import)."""
    if backend == "capi":
        from graphport.runtime.capi import CAPISession, lib

        lib()
        t = time.perf_counter()
        CAPISession(path).close()
        return {"seconds": time.perf_counter() - t}
    import tensorflow as tf

    g = tf.Graph()
    t = time.perf_counter()
    with g.as_default(), tf.compat.v1.Session(graph=g) as s:
        if is_dir:
            tf.compat.v1.saved_model.loader.load(s, tags, path)
        else:
            gd = tf.compat.v1.GraphDef()
            gd.ParseFromString(Path(path).read_bytes())
            tf.graph_util.import_graph_def(gd)
    return {"seconds": time.perf_counter() - t}


def host_check(path: str, batch: int, out: str) -> dict:
    """tf_hosts.host_check's run, in the host's own python: the C API load timed, one run at `batch` on seeded
    inputs, inputs and outputs saved to `out` (compared with ORT by the caller, which has ORT)."""
    import numpy as np

    from graphport.runtime import capi

    warm_up("capi")
    t0 = time.perf_counter()
    sess = load(path, "capi")
    load_s = time.perf_counter() - t0
    feeds = feeds_for(sess.info, batch)
    outputs = sess.run(feeds)
    np.savez(out, **{f"in:{k}": v for k, v in feeds.items()}, **{f"out:{k}": v for k, v in outputs.items()})
    return {"load_s": load_s, "tf_version": capi.lib().TF_Version().decode()}


def _job(job: dict) -> dict:
    kind = job.get("kind", "bench")
    if kind == "host_check":
        return host_check(job["path"], job["batch"], job["out"])
    if kind == "load_phases":
        return load_phases(job["path"], job["backend"])
    if kind == "load_seconds":
        return load_seconds(job["path"], job["backend"], job["is_dir"], job["tags"])
    return measure(job["path"], job["backend"], job["batch_sizes"], job["repeat"], job.get("budget"),
                   job.get("auto", False), job.get("precision", "fp32"))


if __name__ == "__main__":
    print(json.dumps(_job(json.loads(sys.argv[1]))), flush=True)
