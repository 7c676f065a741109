"""How long `graphport convert` takes on the seed EfficientNet-B0 (dynamic batch), both oneDNN settings verified.

Why: issue #23's target is a conversion of <= 3 s on 2 cores. Each run is a fresh `graphport convert` process (a
second conversion in one process would find TensorFlow imported and the workers warm), so the figures are what a
user sees. Two figures per run: the conversion as the CLI reports it (`converted in`: reading the ONNX file to the
last artifact written, TensorFlow's import and the verification at B = 1, 3, 64 under both oneDNN settings
included) and the whole process (Python's start, imports, printing and exit too). Beside them, the floor that no
conversion can go under: importing TensorFlow's Python package (graphport.runtime.tf_python), alone in a fresh
process. Medians of `--runs` (default 5), on a shared machine: read the load average printed with them.

Usage: python benchmarks/convert_time.py [ONNX] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

FIXTURES = Path(os.environ.get("GRAPHPORT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
SEED = FIXTURES / "seed-effnet-b0" / "effnet_opset11_dynamic.onnx"
IMPORT_TF = ("import time; t = time.perf_counter(); from graphport.runtime.tf_python import import_tensorflow; "
             "import_tensorflow(); print(time.perf_counter() - t)")


def convert_once(model: Path, out: Path) -> tuple[float, float]:
    """(conversion seconds as printed, whole-process seconds) of one fresh `graphport convert`."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "graphport", "convert", str(model), "-o", str(out), "--force"],
                          check=False, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"graphport convert failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(re.search(r"converted in ([\d.]+) s", done.stdout).group(1)), wall


def import_floor() -> float:
    done = subprocess.run([sys.executable, "-c", IMPORT_TF], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", nargs="?", default=str(SEED))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    model = Path(args.onnx)
    converted, walls, imports = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):  # alternated, so that a burst of load hits both kinds alike
            seconds, wall = convert_once(model, Path(tmp) / "out")
            converted.append(seconds)
            walls.append(wall)
            imports.append(import_floor())
    table = Table(title=f"graphport convert {model.name}: fresh processes, medians of {args.runs} "
                        f"(load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    for col in ("", "median", "min", "max", "target"):
        table.add_column(col)
    for name, values, target in (("conversion (read -> written, as printed)", converted, "<= 3 s"),
                                 ("whole process", walls, ""), ("TensorFlow import alone (the floor)", imports, "")):
        table.add_row(name, f"{statistics.median(values):.2f} s", f"{min(values):.2f} s", f"{max(values):.2f} s",
                      target)
    Console().print(table)


if __name__ == "__main__":
    main()
