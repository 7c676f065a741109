"""The main job on the bundled example: convert, verify, then load the `.pb` the way a graph-mode host does."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from graphport.conversion.pipeline import ConversionReport, convert
from graphport.runtime.backends import load
from graphport.runtime.batch_size import timed_runs
from graphport.runtime.precision import choose

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example_effnet.onnx"


def run_example(out_dir: str | Path, batch: int = 64, repeat: int = 5,
                precision: str = "fp32") -> tuple[ConversionReport, dict]:
    """Convert the example into `out_dir` (replacing it) and time tf.compat.v1 load, first and steady runs, in
    `precision` (runtime/precision.py; an unavailable bf16 is refused before converting)."""
    choose(precision, "session")
    report = convert(EXAMPLE, out_dir, force=True)
    if not report.ok:
        return report, {}
    t0 = time.perf_counter()
    # model.pb in tf.compat.v1 graph mode, as a graph-mode host loads it
    session = load(Path(out_dir), "session", precision=precision)
    load_s = time.perf_counter() - t0
    x = np.random.default_rng(0).standard_normal((1, 128, 96)).astype(np.float32)
    t0 = time.perf_counter()
    session.run({"melspectrogram": x})
    first = time.perf_counter() - t0
    xb = np.random.default_rng(1).standard_normal((batch, 128, 96)).astype(np.float32)
    session.run({"melspectrogram": xb})
    times = timed_runs(session, {"melspectrogram": xb}, repeat)
    session.close()
    steady = statistics.median(times)
    return report, {"load_s": load_s, "first_run_s": first, f"b{batch}_median_s": steady,
                    "patches_per_s": batch / steady, "precision": session.precision}
