"""Benchmark graphport on the seed EfficientNet-B0: conversion, load times in TF 2.21 and Essentia, B=64 speed vs ORT.

Why: the seed's onnx-tf conversion takes ~1,000 s to load in Essentia (libtensorflow 2.5) and runs 2.5-5x slower
than ONNX Runtime (docs/background.md §1). This script measures the same figures for graphport's output.

Every TF measurement runs in a fresh subprocess (load times are only meaningful cold, and TF_ENABLE_ONEDNN_OPTS
must be set before tensorflow is imported). Essentia runs in its own venv with oneDNN off (see essentia_host).

Usage: python benchmarks/seed_effnet.py [ONNX] [--fixed ONNX] [--with-onnxtf] [--json OUT] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # graphport's recommended setting; before tensorflow import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

import graphport
from graphport.runtime.essentia_host import artifact_names, ensure_essentia_python, essentia_run

FIXTURES = Path(os.environ.get("GRAPHPORT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
SEED = FIXTURES / "seed-effnet-b0"

# Runs in a fresh interpreter: load + first run of model.pb in tf.compat.v1, B=64 steady medians for TF and ORT
# (and optionally the onnx-tf SavedModel) in the same process, so the ratios compare like with like.
TF_WORKER = r"""
import json, statistics, sys, time
cfg = json.loads(sys.argv[1])
t = time.perf_counter(); import tensorflow as tf; import_s = time.perf_counter() - t
import numpy as np, onnxruntime as ort
tf1 = tf.compat.v1
rng = np.random.default_rng(0)
x1 = (4 * rng.random((1, 128, 96))).astype(np.float32)
x64 = (4 * rng.random((64, 128, 96))).astype(np.float32)
def median(f, n):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
out = {"import_tf_s": import_s}
t = time.perf_counter()
gd = tf1.GraphDef(); gd.ParseFromString(open(cfg["pb"], "rb").read())
g = tf.Graph()
with g.as_default():
    tf.import_graph_def(gd, name="")
sess = tf1.Session(graph=g)
out["load_s"] = time.perf_counter() - t
t = time.perf_counter(); sess.run("output_0:0", {"melspectrogram:0": x1}); out["first_run_s"] = time.perf_counter() - t
out["tf_b64_s"] = median(lambda: sess.run("output_0:0", {"melspectrogram:0": x64}), cfg["runs"])
so = ort.InferenceSession(cfg["onnx"], providers=["CPUExecutionProvider"])
out["ort_b64_s"] = median(lambda: so.run(["output_0"], {"melspectrogram": x64}), cfg["runs"])
if cfg.get("onnxtf"):
    g2 = tf.Graph(); s2 = tf1.Session(graph=g2)
    t = time.perf_counter()
    with g2.as_default():
        meta = tf1.saved_model.loader.load(s2, ["serve"], cfg["onnxtf"])
    out["onnxtf_load_s"] = time.perf_counter() - t
    sig = meta.signature_def["serving_default"]
    i_name, o_name = sig.inputs["melspectrogram"].name, sig.outputs["output_0"].name
    t = time.perf_counter(); s2.run(o_name, {i_name: x1}); out["onnxtf_first_run_s"] = time.perf_counter() - t
    out["onnxtf_b64_s"] = median(lambda: s2.run(o_name, {i_name: x64}), cfg["runs"])
print("RESULT " + json.dumps(out))
"""


def tf_subprocess(cfg: dict, onednn: str, timeout: float = 1200) -> dict:
    """One cold tf.compat.v1 run with TF_ENABLE_ONEDNN_OPTS=`onednn`."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", TF_WORKER, json.dumps(cfg)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"TF worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def essentia_case(label: str, model: Path, inp: str, out: str, onnx_path: Path, sizes: tuple[int, ...],
                  python: Path) -> dict:
    """Load + first run in Essentia, and max abs error vs ORT at each batch size."""
    rng = np.random.default_rng(5)
    batches = [(4 * rng.random((b, 128, 96))).astype(np.float32) for b in sizes]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    refs = [sess.run(["output_0"], {"melspectrogram": x})[0] for x in batches]
    res = essentia_run(model, inp, out, batches, timeout=600, steady_runs=0, python=python)
    errs = {}
    for b, got, want in zip(sizes, res["outputs"], refs):
        errs[b] = float(np.max(np.abs(got.reshape(want.shape) - want)))
    return {"case": label, "ok": res["ok"], "error": res.get("error"), "load_s": res.get("load_s"),
            "first_run_s": res.get("first_run_s"), "max_abs": errs}


def fmt(x: float | None, unit: str = "s") -> str:
    return "–" if x is None else f"{x:.3f} {unit}".strip()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", nargs="?", default=str(SEED / "effnet_opset11_dynamic.onnx"))
    ap.add_argument("--fixed", default=None, help="fixed-batch ONNX (default: *_fixed.onnx beside ONNX)")
    ap.add_argument("--with-onnxtf", action="store_true", help="also time the onnx-tf SavedModel in tf.compat.v1")
    ap.add_argument("--onnxtf", default=str(SEED / "onnxtf_dynamic_savedmodel"))
    ap.add_argument("--runs", type=int, default=7, help="timed runs per B=64 median (>= 5)")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    con = Console(width=150)  # wide enough for the tables when piped into RESULTS.md
    onnx_path = Path(args.onnx)
    fixed = Path(args.fixed) if args.fixed else onnx_path.with_name(onnx_path.name.replace("_dynamic", "_fixed"))
    runs = max(5, args.runs)
    results: dict = {"onnx": str(onnx_path), "cpus": os.cpu_count(), "runs": runs}

    with tempfile.TemporaryDirectory(prefix="graphport-bench-") as tmp:
        out_dir = Path(tmp) / "dynamic"
        rep = graphport.convert(onnx_path, out_dir)
        conv = {"seconds": rep.seconds, "tf_nodes": rep.tf_nodes, "transposes": rep.transposes,
                "depthwise": rep.tf_ops.get("DepthwiseConv2dNative", 0), "verified": rep.ok,
                "tf221_max_abs_vs_ort": max(c.max_abs for c in rep.verification.checks)}
        results["conversion"] = conv
        t = Table(title=f"Conversion of {onnx_path.name}")
        for k in ("seconds", "TF nodes", "Transpose", "DepthwiseConv2dNative", "verified (B=1,3,64)",
                  "TF 2.21 max abs vs ORT"):
            t.add_column(k)
        t.add_row(fmt(conv["seconds"]), str(conv["tf_nodes"]), str(conv["transposes"]), str(conv["depthwise"]),
                  str(conv["verified"]), f"{conv['tf221_max_abs_vs_ort']:.2e}")
        con.print(t)

        cfg = {"pb": str(out_dir / "model.pb"), "onnx": str(onnx_path), "runs": runs,
               "onnxtf": args.onnxtf if args.with_onnxtf else None}
        tf_res = {v: tf_subprocess(cfg, v) for v in ("1", "0")}
        results["tf_compat_v1"] = tf_res
        t = Table(title=f"TF 2.21 tf.compat.v1, model.pb (B=64 medians of {runs}, fresh process each)")
        for c in ("TF_ENABLE_ONEDNN_OPTS", "load", "first run (B=1)", "graphport B=64", "ORT B=64",
                  "graphport/ORT"):
            t.add_column(c)
        if args.with_onnxtf:
            for c in ("onnx-tf load", "onnx-tf B=64", "onnx-tf/graphport"):
                t.add_column(c)
        for v, r in tf_res.items():
            r["ratio_vs_ort"] = r["tf_b64_s"] / r["ort_b64_s"]
            row = [v, fmt(r["load_s"]), fmt(r["first_run_s"]), fmt(r["tf_b64_s"]), fmt(r["ort_b64_s"]),
                   f"{r['ratio_vs_ort']:.2f}x"]
            if args.with_onnxtf:
                r["onnxtf_vs_graphport"] = r["onnxtf_b64_s"] / r["tf_b64_s"]
                row += [fmt(r["onnxtf_load_s"]), fmt(r["onnxtf_b64_s"]), f"{r['onnxtf_vs_graphport']:.2f}x"]
            t.add_row(*row)
        con.print(t)

        python = ensure_essentia_python()
        fixed_dir = Path(tmp) / "fixed"
        cases = [("dynamic .pb", out_dir, "pb", onnx_path, (1, 5)),
                 ("dynamic SavedModel", out_dir, "saved_model", onnx_path, (1, 5))]
        if fixed.exists():
            frep = graphport.convert(fixed, fixed_dir)
            results["conversion_fixed"] = {"seconds": frep.seconds, "tf_nodes": frep.tf_nodes, "verified": frep.ok}
            cases.append(("fixed-batch .pb", fixed_dir, "pb", fixed, (1,)))
        ess = []
        for label, d, art, src, sizes in cases:
            model, inp, out = artifact_names(d, art)
            ess.append(essentia_case(label, model, inp, out, src, sizes, python))
        results["essentia"] = ess
        t = Table(title="Essentia 2.1b6 TensorflowPredict (libtensorflow 2.5 C API, oneDNN off)")
        for c in ("artifact", "load", "first run (B=1)", "load + first", "max abs vs ORT (B=1 / B=5)", "ok"):
            t.add_column(c)
        for e in ess:
            total = None if e["load_s"] is None or e["first_run_s"] is None else e["load_s"] + e["first_run_s"]
            errs = " / ".join(f"{v:.2e}" for v in e["max_abs"].values())
            t.add_row(e["case"], fmt(e["load_s"]), fmt(e["first_run_s"]), fmt(total), errs,
                      "yes" if e["ok"] else f"NO: {e['error']}")
        con.print(t)

    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
