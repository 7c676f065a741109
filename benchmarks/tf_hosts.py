"""Every TF host graphport targets, on one converted model: does each artifact load and run, equal to ORT, how long
the load takes, and does the host log any warning or error line.

Hosts: TF 2.5 (essentia-tensorflow's libtensorflow, through Essentia's TensorflowPredict, oneDNN off as Essentia
runs it), TF 2.17 (Essentia's upstream: the tensorflow-cpu 2.17.1 wheel's C API, in its own venv) and TF 2.21 (the
installed wheel's C API), the latter two with oneDNN off and on. Each load is a fresh process; the load time is
the median of `--runs` loads. Issue #26's target: the seed B0's load <= 0.1 s in each host.

Usage: python benchmarks/tf_hosts.py [ONNX] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

import graphport
from graphport.runtime.essentia_host import artifact_names, essentia_run
from graphport.runtime.tf_hosts import host_check

FIXTURES = Path(os.environ.get("GRAPHPORT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
SEED = FIXTURES / "seed-effnet-b0" / "effnet_opset11_dynamic.onnx"


def _ort(onnx_path: Path, feeds: dict) -> dict:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def tf_row(onnx_path: Path, folder: Path, artifact: str, host: str | None, onednn: bool, runs: int) -> list[str]:
    checks = [host_check(folder / artifact, host, batch=2, onednn=onednn) for _ in range(runs)]
    if not all(c.ok for c in checks):
        return ["no", next(c.error for c in checks if not c.ok)[:60], "", ""]
    ref = _ort(onnx_path, checks[0].feeds)
    diff = max(float(np.abs(checks[0].outputs[k] - v).max()) for k, v in ref.items())
    problems = sorted({p for c in checks for p in c.log_problems})
    return ["yes", f"{diff:.1e}", f"{statistics.median(c.load_s for c in checks):.3f} s",
            str(len(problems)) if problems else "none"]


def essentia_row(onnx_path: Path, folder: Path, artifact: str, runs: int) -> list[str]:
    model, inp, out = artifact_names(folder, {"model.pb": "pb", "saved_model": "saved_model"}[artifact])
    x = np.random.default_rng(0).standard_normal((2, 128, 96)).astype(np.float32)
    results = [essentia_run(model, inp, out, [x], timeout=600, steady_runs=0) for _ in range(runs)]
    if not all(r["ok"] for r in results):
        return ["no", str(next(r.get("error") for r in results if not r["ok"]))[:60], "", ""]
    ref = next(iter(_ort(onnx_path, {"melspectrogram": x}).values()))
    diff = float(np.abs(results[0]["outputs"][0].reshape(ref.shape) - ref).max())
    return ["yes", f"{diff:.1e}", f"{statistics.median(r['load_s'] for r in results):.3f} s", "(not read)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", nargs="?", default=str(SEED))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    onnx_path = Path(args.onnx)
    table = Table(title=f"TF hosts x artifacts: {onnx_path.name}, batch 2, load = median of {args.runs} fresh loads")
    for col in ("host", "oneDNN", "artifact", "loads", "max abs vs ORT", "load", "warning/error lines"):
        table.add_column(col)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "out"
        assert graphport.convert(onnx_path, folder, verify_outputs=False).out_dir
        for artifact in ("model.pb", "saved_model"):
            table.add_row("2.5 (Essentia)", "off", artifact, *essentia_row(onnx_path, folder, artifact, args.runs))
        for host, label in (("2.17", "2.17.1 (C API)"), (None, "2.21 (C API)")):
            for onednn in (False, True):
                for artifact in ("model.pb", "saved_model"):
                    table.add_row(label, "on" if onednn else "off", artifact,
                                  *tf_row(onnx_path, folder, artifact, host, onednn, args.runs))
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
