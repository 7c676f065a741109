"""`graphport example`: convert the bundled EfficientNet, verify it, and time it in tf.compat.v1 graph mode."""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.table import Table

from graphport.cli._args import add_precision, command


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `example` options."""
    e = command(sub, "example", "convert the bundled example EfficientNet, verify it, load it in graph mode")
    e.add_argument("-o", "--out", default="graphport-example", help="output directory (replaced)")
    add_precision(e)
    return e


def run(args: argparse.Namespace, console: Console) -> int:
    """0 when the example converted, verified and ran; 1 when verification failed."""
    from graphport.cli.convert_command import print_report
    from graphport.conversion.bundled_example import EXAMPLE, run_example

    console.print(f"example model: {EXAMPLE.name} (EfficientNet-style, dynamic batch)")
    report, timings = run_example(args.out, precision=args.precision)
    print_report(console, report)
    if not report.ok:
        return 1
    t = Table(title="tf.compat.v1 graph mode, model.pb", show_edge=False)
    for col in ("GraphDef import + session", "first run (B=1)", "steady B=64 (median)", "patches/s"):
        t.add_column(col, justify="right")
    t.add_row(f"{timings['load_s']:.3f} s", f"{timings['first_run_s']:.3f} s", f"{timings['b64_median_s']:.3f} s",
              f"{timings['patches_per_s']:.0f}")
    console.print(t)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF's default for this CPU)")
    console.print(f"timed with TF_ENABLE_ONEDNN_OPTS={onednn}, precision {timings['precision']}; verified with "
                  "oneDNN off and on")
    return 0
