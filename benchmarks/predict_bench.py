"""Figures for docs/predict.md: `graphport predict` vs bare session.run, front-end share, peak RSS, Ray actors.

usage: python benchmarks/predict_bench.py MODEL [--minutes 10] [--batch 64] [--ray]
Each measurement runs in a fresh subprocess (`--one KIND`) so that peak RSS (VmHWM) belongs to that run alone.
Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def make_audio(path: Path, minutes: float) -> None:
    """Noise plus a slow sweep, 44.1 kHz stereo 16-bit: decoding, downmix and resampling are all exercised."""
    import soundfile as sf

    sr, rng = 44100, np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 2, subtype="PCM_16") as f:
        for second in range(int(minutes * 60)):
            t = second + np.arange(sr) / sr
            tone = 0.3 * np.sin(2 * np.pi * (100 + 20 * t) * t)
            f.write(np.stack([tone + 0.05 * rng.standard_normal(sr), tone], 1))


def _predict(model: str, audio: Path, out: Path, *extra: str) -> dict:
    import io

    from rich.console import Console

    from graphport.cli import main

    text = io.StringIO()
    t = time.perf_counter()
    code = main(["predict", model, str(audio), "-o", str(out), *extra], out=Console(file=text, width=250))
    keep = ("auto", "patches/s", "model ", "failed")
    log = [line for line in text.getvalue().splitlines() if any(k in line for k in keep) and "━" not in line]
    return {"exit": code, "wall_s": time.perf_counter() - t, "log": log}


def one(kind: str, model: str, audio: Path, batch: str) -> dict:
    from graphport.predict import PredictConfig, file_patches, prepare_model
    from graphport.runtime.backends import load

    path = prepare_model(model, log=lambda s: None)
    if kind == "frontend":
        t = time.perf_counter()
        n = sum(len(p) for p in file_patches(audio, PredictConfig()))
        return {"patches": n, "frontend_s": time.perf_counter() - t}
    if kind == "bare":
        session = load(path, "capi")
        n = sum(len(p) for p in file_patches(audio, PredictConfig()))
        b = int(batch)
        x = np.random.default_rng(0).standard_normal((b, 128, 96)).astype(np.float32)
        tail = np.ascontiguousarray(x[: n % b]) if n % b else None
        t = time.perf_counter()  # no warm-up: predict's timing includes its first (graph-optimising) run too
        for _ in range(n // b):
            session.run({"melspectrogram": x})
        if tail is not None:
            session.run({"melspectrogram": tail})
        dt = time.perf_counter() - t
        return {"patches": n, "batch": b, "run_s": dt, "patches_per_s": n / dt}
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--batch", batch] + (["--engine", "ray", "--actors", kind[-1]] if kind.startswith("ray") else [])
        res = _predict(model, audio, Path(tmp) / "out", *extra)
    res["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--batch", default="64")
    ap.add_argument("--ray", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--audio", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps({"kind": a.one, **one(a.one, a.model, Path(a.audio), a.batch)}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "input.wav"
        make_audio(audio, a.minutes)
        kinds = [("frontend", a.batch), ("bare", a.batch), ("local", a.batch), ("local", "auto")]
        kinds += [("ray1", a.batch), ("ray2", a.batch)] if a.ray else []
        for kind, batch in kinds:
            cmd = [sys.executable, __file__, a.model, "--one", kind, "--audio", str(audio), "--batch", batch]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            print(proc.stdout.strip() or proc.stderr[-2000:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
