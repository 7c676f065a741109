"""The `graphport` command. User errors print one paragraph and exit 2; verification failures, TF crashes and
internal errors exit 1, also in one paragraph (`--traceback` shows an internal error's traceback)."""

from __future__ import annotations

import argparse
import os
import sys

# oneDNN is the host's choice (TF 2.21 turns it on by itself on some CPUs): graphport never sets it for the user's
# process; verification runs both settings in worker processes.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rich.console import Console
from rich.table import Table

from graphport.runtime.backends import BACKENDS

console = Console()


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from e
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got '{text}'")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphport", description=__doc__)
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert an ONNX model into a flat TF graph, SavedModel and metadata")
    c.add_argument("model", help="path to the .onnx file (never modified)")
    c.add_argument("-o", "--out", required=True, help="output directory")
    c.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 3, 64), help="verification batch sizes")
    c.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")
    c.add_argument("--force", action="store_true", help="replace an existing output directory")
    c.add_argument("--keep-failed", action="store_true", help="on a verification failure, write OUTDIR.failed/")
    c.add_argument("--fix-input", action="append", default=[], metavar="NAME=VALUE",
                   help="specialise an input to a constant (JSON value, e.g. sr=16000); repeatable")
    c.add_argument("--atol", type=float, default=1e-4)
    c.add_argument("--rtol", type=float, default=1e-3)
    b = sub.add_parser("bench", help="load and inference times per backend, each in a fresh subprocess")
    b.add_argument("model", help=".onnx, .pb, SavedModel dir or graphport output dir")
    b.add_argument("--vs", action="append", default=[], help="another model to measure side by side")
    b.add_argument("--backends", default=",".join(BACKENDS))
    b.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 16, 64))
    b.add_argument("--repeat", type=int, default=5, help="steady-state runs per batch size (median reported)")
    b.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement before it is killed")
    b.add_argument("--onednn", choices=("on", "off", "both"), default="on",
                   help="TF_ENABLE_ONEDNN_OPTS for the TF backends")
    b.add_argument("--json", help="write the measurements as JSON here")
    b.add_argument("--report", help="write plots here: .png, or .html with the plots embedded")
    b.add_argument("--batch", choices=("auto",), help="pick the batch size from free memory and throughput")
    b.add_argument("--memory-budget", type=float, help="GiB of peak process memory for --batch auto "
                   "(default: half the free memory)")
    b.add_argument("--trust", action="store_true", help="go on although a TF model has file/network/code ops")
    p = sub.add_parser("profile", help="per-op-type inference profile and load-phase breakdown")
    p.add_argument("model", help=".pb, SavedModel dir or graphport output dir")
    p.add_argument("--vs", action="append", default=[], help="another model to profile side by side")
    p.add_argument("--backend", choices=("session", "capi", "tf2"), default="session")
    p.add_argument("--phase", choices=("load", "inference", "both"), default="both")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=3, help="traced runs to average")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a load is abandoned")
    from graphport.doctor.cli import register as register_doctor

    register_doctor(sub)
    from graphport.predict_cli import register as register_predict

    register_predict(sub)
    e = sub.add_parser("example", help="convert the bundled example EfficientNet, verify it, load it in graph mode")
    e.add_argument("-o", "--out", default="graphport-example", help="output directory (replaced)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from graphport.errors import GraphportError

    try:
        return {"convert": _convert, "example": _example, "bench": _bench, "profile": _profile,
                "doctor": _doctor, "predict": _predict}[args.command](args)
    except GraphportError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        return e.exit_code
    except KeyboardInterrupt:
        console.print("[red]interrupted; outputs are written atomically, so nothing half-written was left[/]")
        return 130
    except Exception as e:  # a bug of ours still gets one paragraph, and outputs stay whole
        if args.traceback:
            raise
        console.print(f"[bold red]internal error[/] in 'graphport {args.command}': {type(e).__name__}: {str(e).rstrip('.')}. Nothing "
                      "half-written was left. This is a graphport bug: please report it with the output of the same "
                      "command run with --traceback.", highlight=False)
        return 1


def _convert(args: argparse.Namespace) -> int:
    from graphport.converter import convert

    report = convert(args.model, args.out, batch_sizes=args.batch_sizes, verify_outputs=not args.no_verify,
                     force=args.force, keep_failed=args.keep_failed, atol=args.atol, rtol=args.rtol,
                     fix_inputs=_fixed_inputs(args.fix_input))
    print_report(report)
    if not report.ok:
        where = f"; artifacts kept in {args.out.rstrip('/')}.failed/" if args.keep_failed else ""
        console.print(f"[bold red]verification failed[/]: '{args.out}' was left as it was{where}")
        return 1
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from graphport.bench import bench, table
    from graphport.runtime.trust import require_trust

    onednn = {"on": (True,), "off": (False,), "both": (True, False)}[args.onednn]
    models = [Path(args.model), *map(Path, args.vs)]
    for m in models:  # before any backend loads anything
        require_trust(m, args.trust)
    backends = tuple(x.strip() for x in args.backends.split(",") if x.strip())
    auto = args.batch == "auto"
    sizes = [0] if auto else list(args.batch_sizes)
    budget = int(args.memory_budget * 1024**3) if args.memory_budget else None
    rows = bench(models, backends, sizes, args.repeat, args.timeout, onednn, console, auto, budget)
    console.print(table(rows, sizes))
    console.print("TF backends ran with TF_ENABLE_ONEDNN_OPTS=" + "/".join("1" if f else "0" for f in onednn)
                  + "; Essentia's libtensorflow 2.5 runs with it off (on, it miscomputes strided SAME convs).")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.report:
        from graphport.report import write_report

        console.print(f"plots: {write_report(rows, args.report)}")
    return 0 if all(r.get("status") == "ok" or "timed out" in r.get("status", "") for r in rows) else 1


def _profile(args: argparse.Namespace) -> int:
    from graphport.profile import format_rows, load_phases, profile_inference

    for model in [args.model, *args.vs]:
        console.rule(f"{model} ({args.backend}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')})")
        if args.phase in ("load", "both"):
            phases = load_phases(model, args.backend, args.timeout)
            t = Table(title="load phase (wall clock, fresh process)", show_edge=False)
            t.add_column("phase")
            t.add_column("seconds", justify="right")
            for k, v in phases.items():
                if isinstance(v, float):
                    t.add_row(k.removesuffix("_s"), f"{v:.3f}")
                elif k == "error":
                    t.add_row("[red]error[/]", v)
            console.print(t)
        if args.phase in ("inference", "both"):
            t = Table(title=f"inference, batch {args.batch} (TF step stats, mean of {args.runs} runs)",
                      show_edge=False)
            t.add_column("Type", no_wrap=True, min_width=32)
            t.add_column("#Occurrences", justify="right", no_wrap=True)
            for col in ("Total self-time (us)", "% of host self-time"):
                t.add_column(col, justify="right")
            for row in format_rows(profile_inference(model, args.backend, args.batch, args.runs)):
                t.add_row(*row)
            console.print(t)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from graphport.doctor.cli import run

    return run(args, console)


def _predict(args: argparse.Namespace) -> int:
    from graphport.predict_cli import run

    return run(args, console)


def _example(args: argparse.Namespace) -> int:
    from graphport.example import EXAMPLE, run_example

    console.print(f"example model: {EXAMPLE.name} (EfficientNet-style, dynamic batch)")
    report, timings = run_example(args.out)
    print_report(report)
    if not report.ok:
        return 1
    t = Table(title="tf.compat.v1 graph mode, model.pb", show_edge=False)
    for col in ("GraphDef import + session", "first run (B=1)", "steady B=64 (median)", "patches/s"):
        t.add_column(col, justify="right")
    t.add_row(f"{timings['load_s']:.3f} s", f"{timings['first_run_s']:.3f} s", f"{timings['b64_median_s']:.3f} s",
              f"{timings['patches_per_s']:.0f}")
    console.print(t)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TF's default for this CPU)")
    console.print(f"timed with TF_ENABLE_ONEDNN_OPTS={onednn}; verified with oneDNN off and on")
    return 0


def _fixed_inputs(items: list[str]) -> dict:
    import json

    import numpy as np

    from graphport.errors import GraphportError

    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError("expected NAME=VALUE")
            fixed[name] = np.array(json.loads(value))
        except ValueError as e:
            raise GraphportError(f"--fix-input '{item}': {e}; write NAME=VALUE with a JSON value, e.g. sr=16000.")
    return fixed


def print_report(report) -> None:
    meta = report.metadata
    console.print(f"[bold]converted in {report.seconds:.2f} s[/] -> {report.out_dir or '(not written)'}")
    ops = Table(title="TF graph", show_edge=False)
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for name, count in report.tf_ops.items():
        ops.add_row(name, str(count))
    ops.add_row("[bold]total nodes[/]", f"[bold]{report.tf_nodes}[/]")
    ops.add_row("[bold]Transpose[/]", f"[bold]{report.transposes}[/]")
    console.print(ops)
    io = Table(title="names for hosts", show_edge=False)
    for col in ("", "ONNX", ".pb tensor", "SavedModel tensor"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for e in meta[kind]:
            io.add_row(kind[:-1], e["name"], e["pb"]["tensor"], e["saved_model"]["tensor"])
    console.print(io)
    if report.verification is None:
        console.print("[yellow]verification skipped (--no-verify)[/]")
        return
    v = report.verification
    t = Table(title=f"verification against ONNX Runtime (atol {v.atol:g}, rtol {v.rtol:g}, plus the float-order "
                    "floor per output)", show_edge=False)
    for col in ("oneDNN", "batch", "output", "max abs", "max rel", ""):
        t.add_column(col)
    for c in v.checks:
        t.add_row(c.onednn, str(c.batch), c.output, f"{c.max_abs:.2e}", f"{c.max_rel:.2e}",
                  "[green]ok[/]" if c.ok else "[red]FAIL[/]")
    console.print(t)
    console.print(f"batch invariance: max |row of batch N - batch 1| = {v.batch_invariance:.2e} "
                  + ("[green]ok[/]" if v.batch_invariance_ok else "[red]FAIL[/]"))
    for f in v.failures:
        console.print(f"[bold red]oneDNN {f.onednn}:[/] {f.message}", highlight=False)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
