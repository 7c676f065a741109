"""`graphport predict MODEL AUDIO_PATHS... -o OUT`: the lead's graphport/cli.py calls `register` and `run`.

Exit codes: 0 every file predicted (or already done), 1 some files failed (listed), 2 user error (GraphportError,
caught by the main CLI), 130 interrupted (finished files are kept; the same command resumes).
"""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from graphport.audio import LAST_PATCH_MODES
from graphport.errors import GraphportError
from graphport.predict import (
    FileResult,
    PredictConfig,
    Summary,
    check_model_input,
    collect_inputs,
    estimate_patches,
    model_fingerprint,
    pick_outputs,
    prepare_model,
    run_local,
)


def _batch(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch must be >= 1, got {value}")
    return value


def _positive(text: str) -> int:
    value = _batch(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("expected an integer >= 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `predict` subcommand; its handler is `run` (set as the `handler` default)."""
    p = subparsers.add_parser("predict", help="audio files -> Essentia-compatible mel patches -> predictions")
    p.add_argument("model", help=".pb, SavedModel dir, graphport output dir, or .onnx (converted once, cached)")
    p.add_argument("audio", nargs="+", help="audio files and/or directories (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="output directory (reused: finished files are skipped)")
    p.add_argument("--batch", type=_batch, default="auto", help="patches per model run, or 'auto' (memory-aware)")
    p.add_argument("--memory-budget", type=float, help="GiB of peak process memory for --batch auto "
                   "(default: half the free memory)")
    p.add_argument("--outputs", help="comma-separated model outputs to keep (default: all)")
    p.add_argument("--format", choices=("npy", "parquet"), default="npy",
                   help="npy: OUT/<file>.npz per input; parquet: OUT/predictions.parquet + OUT/means.parquet")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", help="existing Ray cluster (default: start a local one)")
    p.add_argument("--actors", type=_positive, default=1, help="Ray actors, each holding one loaded model")
    p.add_argument("--backend", choices=("capi", "session", "tf2", "onnxruntime"), default="capi")
    p.add_argument("--patch-size", type=_positive, default=128, help="frames per patch")
    p.add_argument("--patch-hop", type=_positive, default=62, help="frames between patch starts")
    p.add_argument("--last-patch", choices=LAST_PATCH_MODES, default="discard",
                   help="Essentia's lastPatchMode: drop the frames after the last full patch, or repeat them")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    """Predict every input file; see the module doc for exit codes."""
    console = console or Console()
    if args.patch_hop > args.patch_size:
        raise GraphportError(f"--patch-hop ({args.patch_hop}) must not exceed --patch-size ({args.patch_size}).")
    if args.ray_address and args.engine != "ray":
        raise GraphportError("--ray-address needs --engine ray.")
    outputs_wanted = [s.strip() for s in args.outputs.split(",") if s.strip()] if args.outputs else None
    cfg = PredictConfig(args.patch_size, args.patch_hop, args.last_patch, outputs_wanted, args.format)
    items = collect_inputs(args.audio)
    model = prepare_model(args.model, log=lambda s: console.print(s, highlight=False))

    from pathlib import Path

    from graphport.predict import Outputs
    from graphport.runtime.backends import load

    session = load(model, args.backend)
    check_model_input(session, cfg.patch_size)
    names = pick_outputs(session, cfg.outputs)
    outputs = Outputs(Path(args.out), cfg, model_fingerprint(session.info.path))
    todo = [it for it in items if not outputs.done(it.key)]
    skipped = len(items) - len(todo)
    batch = args.batch
    if batch == "auto":
        from graphport.batching import pick_batch_size

        budget = int(args.memory_budget * 1024**3) if args.memory_budget else None
        choice = pick_batch_size(session, budget=budget)
        batch = choice.batch
        console.print(f"--batch auto: {choice.explain()}", highlight=False)
    if skipped:
        console.print(f"{skipped} of {len(items)} files already done in {args.out}; skipping them")

    total = sum(estimate_patches(it.path, cfg) for it in todo)
    done_files = [0]
    with Progress(TextColumn("{task.fields[files]}"), BarColumn(), TextColumn("{task.completed:.0f} patches"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=False,
                  disable=not todo) as progress:
        task = progress.add_task("predict", total=total or None, files=f"0/{len(todo)} files", rate="")
        started = [None]

        def on_progress(n: int, res: FileResult | None) -> None:
            import time

            started[0] = started[0] or time.perf_counter()
            if res is not None:
                done_files[0] += 1
                if res.error:
                    progress.console.print(f"[yellow]skipped[/] {res.item.path}: {res.error}", highlight=False)
            progress.update(task, advance=n, files=f"{done_files[0]}/{len(todo)} files")
            elapsed = time.perf_counter() - started[0]
            completed = progress.tasks[0].completed
            if elapsed > 0 and completed:
                progress.update(task, rate=f"{completed / elapsed:.0f} patches/s")

        try:
            if args.engine == "local":
                summary = run_local(session, todo, outputs, cfg, batch, on_progress)
            else:
                session.close()
                from graphport.predict_ray import run_ray

                summary = run_ray(model, args.backend, todo, outputs, cfg, batch, args.actors, args.ray_address,
                                  names, on_progress)
        except KeyboardInterrupt:
            progress.stop()
            console.print(f"[red]interrupted[/]: {done_files[0]} finished files are in {args.out}; run the same "
                          "command again to resume.")
            return 130
    summary.skipped_done = skipped
    written = outputs.finalize(items)
    _print_summary(console, summary, args, written)
    return 1 if summary.failed else 0


def _print_summary(console: Console, s: Summary, args: argparse.Namespace, written: list) -> None:
    ok = len(s.results) - len(s.failed)
    rate = s.patches / s.wall_s if s.wall_s else 0.0
    console.print(f"[bold]{ok} files predicted[/], {s.skipped_done} already done, {len(s.failed)} failed; "
                  f"{s.patches} patches in {s.wall_s:.2f} s ({rate:.0f} patches/s, batch {s.batch}, "
                  f"engine {args.engine}, backend {args.backend}, "
                  f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})", highlight=False)
    if s.wall_s:
        console.print(f"model {s.model_s:.2f} s, front end {s.frontend_s:.2f} s "
                      f"({'overlapped with the model' if args.engine == 'local' else 'in Ray tasks'})",
                      highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if s.failed:
        t = Table(title="failed files (skipped)", show_edge=False)
        t.add_column("file")
        t.add_column("reason")
        for r in s.failed:
            t.add_row(str(r.item.path), r.error)
        console.print(t)
