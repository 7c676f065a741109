"""Inference speed of graphport's graphs against ONNX Runtime across the architecture zoo (issue #15).

Why: the seed benchmark covers one network; the zoo (tests/zoo_models.py, 61 architectures with random weights)
shows which op patterns TF's Eigen kernels (oneDNN off, as in Essentia's libtensorflow 2.5) run slowly. Each
model is exported at opset 17 with a dynamic batch, converted by `graphport.convert` (verified as always), and
timed at batch 16 in a `tf.compat.v1` Session against a default ORT session, each in a process of its own (as
hosts run them), runs alternating between them, medians. Each oneDNN setting gets a fresh TF process: TF reads
TF_ENABLE_ONEDNN_OPTS once, at import.

`--cache DIR` keeps the exports and conversions (a conversion is redone when graphport's sources change).
`--baseline DIR` also times the model.pb files of another cache (conversions by an older graphport, made by
running this script with that checkout first on PYTHONPATH), alternating with the others, to measure a rewrite.

usage: python benchmarks/zoo_speed.py [--models a,b] [--cache DIR] [--baseline DIR] [--onednn off,on]
                                      [--batch 16] [--min-runs 12] [--seconds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
SETTLE_S = 0.02  # pause before each timed run (see worker)
sys.path.insert(0, str(TESTS))


def prepare(name: str, cache: Path, stamp: str) -> Path:
    """The converted folder of zoo model `name` in `cache` (exported and converted when missing or stale)."""
    from zoo_models import zoo_model

    import graphport

    onnx_path = cache / f"{name}.onnx"
    out = cache / name
    if not onnx_path.exists():
        zoo_model(name, onnx_path.with_suffix(".tmp.onnx")).rename(onnx_path)
    stamp_file = cache / f"{name}.stamp"
    if not (out / "model.pb").exists() or not stamp_file.exists() or stamp_file.read_text() != stamp:
        t = time.perf_counter()
        rep = graphport.convert(onnx_path, out, batch_sizes=(1, 3, 16), force=True)
        if not rep.ok:
            raise RuntimeError(f"{name}: verification failed")
        stamp_file.write_text(stamp)
        print(f"converted {name} in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return out


def worker() -> None:
    """A measuring process, driven line by line over stdin/stdout (JSON): `load` a model's sessions of this
    process's kind and warm them up, `run` one of them once after a pause and answer the seconds, `close`."""
    import numpy as np

    from graphport.runtime.backends import load

    sessions: dict = {}
    feeds: dict = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "load":
            sessions = {label: load(path, backend) for label, (path, backend) in cmd["sessions"].items()}
            rng = np.random.default_rng(0)  # the zoo's own example size: a raw-audio model needs its sample count
            feeds = {cmd["input"]: rng.standard_normal((cmd["batch"], *cmd["shape"])).astype(np.float32)}
            for s in sessions.values():
                s.run(feeds)
                s.run(feeds)
            answer: dict = {"ok": True}
        elif cmd["cmd"] == "run":
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            sessions[cmd["label"]].run(feeds)
            answer = {"s": time.perf_counter() - t}
        else:
            for s in sessions.values():
                s.close()
            sessions, answer = {}, {"ok": True}
        print(json.dumps(answer), flush=True)


class Driver:
    """One worker process; `ask` sends a command and waits for its answer."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def measure(model: dict, drivers: dict[str, Driver], args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per contestant. TF and ORT run in separate processes, as hosts run them: in one process
    ORT ran 2-3x slower than alone (ShuffleNet 15 ms against 6 ms). Runs alternate over every order of the
    contestants, so each follows each other equally often (in a fixed order two byte-identical graphs timed
    0.63-0.87x apart), and each starts after a pause."""
    owner = {"ort": "ort", **{label: "tf" for label in model["tf"]}}
    for kind, d in drivers.items():
        own = {"ort": (model["onnx"], "onnxruntime")} if kind == "ort" else \
            {label: (path, "session") for label, path in model["tf"].items()}
        d.ask(cmd="load", sessions=own, input=model["input"], shape=model["shape"], batch=args.batch)
    times: dict[str, list[float]] = {k: [] for k in owner}
    orders = list(itertools.permutations(owner))
    start = time.perf_counter()
    while len(times["ort"]) < args.min_runs or (
            time.perf_counter() - start < args.seconds and len(times["ort"]) < args.max_runs):
        for label in orders[len(times["ort"]) % len(orders)]:
            times[label].append(drivers[owner[label]].ask(cmd="run", label=label)["s"])
    for d in drivers.values():
        d.ask(cmd="close")
    return {k: statistics.median(v) for k, v in times.items()}


def run_setting(models: list[dict], onednn: str, args: argparse.Namespace) -> dict[str, dict]:
    """All models under one TF_ENABLE_ONEDNN_OPTS value: one fresh TF process and one ORT process."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn == "on" else "0", TF_CPP_MIN_LOG_LEVEL="2")
    drivers = {"tf": Driver(env), "ort": Driver(env)}
    results = {}
    try:
        for model in models:
            med = measure(model, drivers, args)
            results[model["name"]] = {"name": model["name"], "median_s": med}
            extra = "".join(f"  {k} {1e3 * v:.2f} ms ({v / med['graphport']:.2f}x)" for k, v in med.items()
                            if k not in ("ort", "graphport"))
            print(f"oneDNN {onednn:3} {model['name']:22} graphport {1e3 * med['graphport']:8.2f} ms  "
                  f"ORT {1e3 * med['ort']:8.2f} ms  ratio {med['graphport'] / med['ort']:.2f}{extra}", flush=True)
    finally:
        for d in drivers.values():
            d.close()
    return results


def summary(results: dict[str, dict[str, dict]]) -> None:
    """Median and worst graphport/ORT ratio per setting (and per baseline contestant)."""
    for onednn, per_model in results.items():
        if not per_model:
            continue
        labels = [k for k in next(iter(per_model.values()))["median_s"] if k != "ort"]
        for label in labels:
            ratios = {n: r["median_s"][label] / r["median_s"]["ort"] for n, r in per_model.items()}
            worst = max(ratios, key=ratios.get)
            print(f"oneDNN {onednn}: {label}/ORT over {len(ratios)} models: median "
                  f"{statistics.median(ratios.values()):.2f}x, worst {ratios[worst]:.2f}x ({worst})")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: the whole zoo)")
    ap.add_argument("--cache", default=None, help="keep exports and conversions in this folder")
    ap.add_argument("--baseline", default=None, help="another cache whose model.pb files are timed as well")
    ap.add_argument("--onednn", default="off,on", help="settings to measure: off, on or off,on")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--min-runs", type=int, default=12)
    ap.add_argument("--max-runs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=2.0, help="keep alternating runs at least this long")
    ap.add_argument("--convert-only", action="store_true", help="fill the cache and stop")
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker()
        return {}
    from zoo_models import ZOO

    names = [n for n in args.models.split(",") if n] or list(ZOO)
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        ap.error(f"unknown zoo models {unknown}; known: {', '.join(ZOO)}")
    tmp = tempfile.TemporaryDirectory(prefix="zoo-speed-") if args.cache is None else None
    cache = Path(args.cache or tmp.name)
    cache.mkdir(parents=True, exist_ok=True)
    from graphport.predict.model import converter_stamp

    stamp = converter_stamp()
    models = []
    for name in names:
        out = prepare(name, cache, stamp)
        tf = {"graphport": str(out)}
        if args.baseline and (Path(args.baseline) / name / "model.pb").exists():
            tf["baseline"] = str(Path(args.baseline) / name)
        models.append({"name": name, "onnx": str(cache / f"{name}.onnx"), "tf": tf, "input": ZOO[name].input_name,
                       "shape": list(ZOO[name].shape)})
    if args.convert_only:
        return {}
    print(f"load average {os.getloadavg()[0]:.2f}; batch {args.batch}", flush=True)
    results = {s: run_setting(models, s, args) for s in args.onednn.split(",")}
    summary(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
