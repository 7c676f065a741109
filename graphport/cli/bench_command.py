"""`graphport bench MODEL`: load and inference times per backend, each measured in a fresh subprocess."""

from __future__ import annotations

import argparse

from rich.console import Console

from graphport.cli._args import (
    BACKEND_NAMES,
    add_precision,
    backend_list,
    batch_sizes,
    command,
    positive_float,
    positive_int,
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `bench` options."""
    b = command(sub, "bench", "load and inference times per backend, each in a fresh subprocess")
    b.add_argument("model", help=".onnx, .pb, SavedModel dir or graphport output dir")
    b.add_argument("--vs", action="append", default=[], metavar="OTHER",
                   help="another model to measure side by side; repeatable")
    b.add_argument("--backends", type=backend_list, default=",".join(BACKEND_NAMES), metavar="NAME,...",
                   help=f"comma-separated, from {', '.join(BACKEND_NAMES)}; each model runs on those that apply "
                        "(onnxruntime for .onnx, the TF ones for TF models)")
    b.add_argument("--batch-sizes", type=batch_sizes, default="1,16,64", metavar="N,N,...", help="batch sizes to time")
    b.add_argument("--repeat", type=positive_int, default=5, metavar="N", help="steady-state runs per batch size (median reported)")
    b.add_argument("--timeout", type=positive_float, default=120.0, metavar="S",
                   help="seconds per measurement before it is killed and reported as timed out")
    b.add_argument("--onednn", choices=("on", "off", "both"), default="on",
                   help="TF_ENABLE_ONEDNN_OPTS for the TF backends")
    b.add_argument("--json", metavar="OUT", help="write the measurements as JSON here")
    b.add_argument("--report", metavar="FILE", help="write plots here: .png, or .html with the plots embedded "
                   "(needs the report extra)")
    b.add_argument("--batch", choices=("auto",), help="pick the batch size from free memory and throughput")
    b.add_argument("--memory-budget", type=positive_float, metavar="GIB",
                   help="GiB of peak process memory for --batch auto (default: half the free memory)")
    b.add_argument("--trust", action="store_true", help="go on although a TF model has file/network/code ops")
    add_precision(b)
    return b


def run(args: argparse.Namespace, console: Console) -> int:
    """0 when every cell was measured or timed out, 1 when one failed."""
    import json
    from pathlib import Path

    from graphport.core.errors import GraphportError, require_extra

    if args.report:  # before minutes of measuring, not after
        require_extra("report", "graphport bench --report")
    from graphport.runtime.trust import require_trust
    from graphport.tools.benchmark import bench, table

    onednn = {"on": (True,), "off": (False,), "both": (True, False)}[args.onednn]
    models = [Path(args.model), *map(Path, args.vs)]
    for m in models:  # before any backend loads anything
        require_trust(m, args.trust)
    auto = args.batch == "auto"
    sizes = [0] if auto else list(args.batch_sizes)
    budget = int(args.memory_budget * 1024**3) if args.memory_budget else None
    rows = bench(models, args.backends, sizes, args.repeat, args.timeout, onednn, console, auto, budget,
                 args.precision)
    if not rows:  # an empty table with exit 0 would read as success
        raise GraphportError(f"nothing to measure: none of the backends {', '.join(args.backends)} runs "
                             f"{', '.join(m.name for m in models)} (.onnx runs on onnxruntime, TF models on the "
                             "others).")
    console.print(table(rows, sizes))
    console.print("TF backends ran with TF_ENABLE_ONEDNN_OPTS=" + "/".join("1" if f else "0" for f in onednn)
                  + "; Essentia's libtensorflow 2.5 runs with it off (on, it miscomputes strided SAME convs).")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.report:
        from graphport.tools.bench_figure import write_report

        console.print(f"plots: {write_report(rows, args.report)}")
    return 0 if all(r.get("status") == "ok" or "timed out" in r.get("status", "") for r in rows) else 1
