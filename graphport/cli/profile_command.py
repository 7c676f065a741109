"""`graphport profile MODEL`: TF's per-op-type inference profile and a wall-clock load breakdown."""

from __future__ import annotations

import argparse
import os
import re

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graphport.cli._args import command, positive_float, positive_int

_CLASS_PREFIX = re.compile(r"^(?:\w+\.)+[A-Z]\w*: ")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `profile` options."""
    p = command(sub, "profile", "per-op-type inference profile and load-phase breakdown")
    p.add_argument("model", help=".pb, SavedModel dir or graphport output dir")
    p.add_argument("--vs", action="append", default=[], metavar="OTHER",
                   help="another model to profile side by side; repeatable")
    p.add_argument("--backend", choices=("session", "capi", "tf2"), default="session", help="how the model is run")
    p.add_argument("--phase", choices=("load", "inference", "both"), default="both", help="what to profile")
    p.add_argument("--batch", type=positive_int, default=64, metavar="N", help="batch size of the profiled runs")
    p.add_argument("--runs", type=positive_int, default=3, metavar="N", help="traced runs to average")
    p.add_argument("--timeout", type=positive_float, default=300.0, metavar="S", help="seconds before a load is abandoned")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """0 when every model was profiled, else the worst failure's code: 2 for an unusable model, 1 for a load or
    run that failed. Each failure is a paragraph of its own and the other models are still profiled."""
    from graphport.core.errors import GraphportError
    from graphport.runtime.model_info import resolve
    from graphport.tools.op_profile import format_rows, load_phases, profile_inference

    models = [args.model, *args.vs]
    for model in models:  # an unreadable model is a user error, told once, before any slow load
        resolve(model, "saved_model" if args.backend == "tf2" else None)
    code = 0
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    for model in models:
        console.print(f"[bold]{model}[/] ({args.backend}, TF_ENABLE_ONEDNN_OPTS={onednn})", highlight=False)
        if args.phase in ("load", "both"):
            phases = load_phases(model, args.backend, args.timeout)
            if "error" in phases:
                code = max(code, _failure(console, model, "load", phases["error"]))
            else:
                t = Table(title="load phase (wall clock, fresh process)", show_edge=False)
                t.add_column("phase")
                t.add_column("seconds", justify="right")
                for k, v in phases.items():
                    if isinstance(v, float):
                        t.add_row(k.removesuffix("_s"), f"{v:.3f}")
                console.print(t)
        if args.phase in ("inference", "both"):
            try:
                rows = format_rows(profile_inference(model, args.backend, args.batch, args.runs))
            except GraphportError as e:
                code = max(code, _failure(console, model, "inference", str(e), e.exit_code))
                continue
            t = Table(title=f"inference, batch {args.batch} (TF step stats, mean of {args.runs} runs)",
                      show_edge=False)
            t.add_column("Type", no_wrap=True, min_width=32)
            t.add_column("#Occurrences", justify="right", no_wrap=True)
            for col in ("Total self-time (us)", "% of host self-time"):
                t.add_column(col, justify="right")
            for row in rows:
                t.add_row(*row)
            console.print(t)
    return code


def _failure(console: Console, model: str, phase: str, message: str, exit_code: int = 1) -> int:
    """An error is a paragraph of its own, never a cell of a table of figures."""
    message = _CLASS_PREFIX.sub("", message.strip()).rstrip(".")  # a child's last line: 'pkg.mod.SomeError: ...'
    console.print(f"[bold red]error:[/] {phase} of {escape(model)} failed: {escape(message)}.", highlight=False)
    return exit_code
