"""The main job on the bundled example: convert, verify, then load the `.pb` the way a graph-mode host does."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
from tensorflow.core.framework import graph_pb2

from graphport.converter import ConversionReport, convert
from graphport.runtime.isolated import GraphRunner

EXAMPLE = Path(__file__).parent / "examples" / "example_effnet.onnx"


def run_example(out_dir: str | Path, batch: int = 64, repeat: int = 5) -> tuple[ConversionReport, dict]:
    """Convert the example into `out_dir` (replacing it) and time tf.compat.v1 load, first and steady runs."""
    report = convert(EXAMPLE, out_dir, force=True)
    if not report.ok:
        return report, {}
    out = Path(out_dir)
    meta = json.loads((out / "model.json").read_text())
    inputs = {e["name"]: e["pb"]["op"] for e in meta["inputs"]}
    outputs = {e["name"]: e["pb"]["op"] for e in meta["outputs"]}
    t0 = time.perf_counter()
    gd = graph_pb2.GraphDef()
    gd.ParseFromString((out / "model.pb").read_bytes())
    runner = GraphRunner(gd, inputs, outputs)  # verified under both oneDNN settings by now
    load = time.perf_counter() - t0
    x = np.random.default_rng(0).standard_normal((1, 128, 96)).astype(np.float32)
    t0 = time.perf_counter()
    runner.run({"melspectrogram": x})
    first = time.perf_counter() - t0
    xb = np.random.default_rng(1).standard_normal((batch, 128, 96)).astype(np.float32)
    runner.run({"melspectrogram": xb})
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        runner.run({"melspectrogram": xb})
        times.append(time.perf_counter() - t0)
    runner.close()
    steady = statistics.median(times)
    return report, {"load_s": load, "first_run_s": first, f"b{batch}_median_s": steady,
                    "patches_per_s": batch / steady}
