"""`graphport predict MODEL AUDIO... -o OUT`: audio files -> Essentia-compatible mel patches -> predictions.

Exit codes: 0 every file predicted (or already done), 1 some files failed (listed), 2 user error (GraphportError,
including a missing `audio` or `ray` extra), 130 interrupted (finished files are kept; the same command resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from graphport.cli._args import add_precision, batch_or_auto, command, positive_float, positive_int, thread_budget

# graphport.audio.LAST_PATCH_MODES, repeated so the parser imports no numpy (tests/test_cli_parser.py checks it).
LAST_PATCH_MODES = ("discard", "repeat")

if TYPE_CHECKING:
    from graphport.predict import Summary, Threads


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `predict` options."""
    p = command(sub, "predict", "audio files -> Essentia-compatible mel patches -> predictions")
    p.add_argument("model", help=".pb, SavedModel dir, graphport output dir, or .onnx (converted once, cached)")
    p.add_argument("audio", nargs="+", help="audio files and/or directories (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="output directory (reused: finished files are skipped)")
    p.add_argument("--batch", type=batch_or_auto, default="auto", metavar="auto|N",
                   help="patches per model run, or 'auto' (memory-aware)")
    p.add_argument("--memory-budget", type=positive_float, metavar="GIB",
                   help="GiB of peak process memory for --batch auto (default: half the free memory)")
    p.add_argument("--outputs", help="comma-separated model outputs to keep (default: all)")
    p.add_argument("--format", choices=("npy", "parquet"), default="npy",
                   help="npy: OUT/<file>.npz per input; parquet: OUT/predictions.parquet + OUT/means.parquet")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: one process; ray: a Ray Data job, one loaded model per actor (needs the ray extra)")
    p.add_argument("--ray-address", help="existing Ray cluster (default: start a local one)")
    p.add_argument("--actors", type=positive_int, default=1, metavar="N", help="Ray actors, each holding one loaded model")
    p.add_argument("--backend", choices=("capi", "session", "tf2", "onnxruntime"), default="capi",
                   help="how the model is run")
    p.add_argument("--threads", type=thread_budget, metavar="MODEL[,FRONTEND]",
                   help="local engine: the model's intra-op threads and the front end's threads (files decoded in "
                        "parallel); default: every core this process may use for the model, 1 front-end thread "
                        "per 8 cores")
    p.add_argument("--patch-size", type=positive_int, metavar="N",
                   help="frames per patch (default: the algorithm's in the model's Essentia JSON, else 128)")
    p.add_argument("--patch-hop", type=positive_int, metavar="N",
                   help="frames between patch starts (default: as --patch-size, else 62)")
    p.add_argument("--last-patch", choices=LAST_PATCH_MODES,
                   help="Essentia's lastPatchMode: drop the frames after the last full patch, or repeat them "
                        "(default: discard)")
    add_precision(p)
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Predict every input file; see the module doc for exit codes."""
    from graphport.core.errors import GraphportError, require_extra

    if args.ray_address and args.engine != "ray":
        raise GraphportError("--ray-address needs --engine ray.")
    if args.threads and args.engine != "local":
        raise GraphportError("--threads applies to the local engine; with --engine ray, Ray places the work.")
    require_extra("audio", "graphport predict", ("soundfile", "samplerate", "threadpoolctl",
                                                 *(("pyarrow",) if args.format == "parquet" else ())))
    if args.engine == "ray":
        require_extra("ray", "graphport predict --engine ray")
        if not getattr(args, "verbose", False):
            _quiet_ray()
    return _predict(args, console)


def _quiet_ray() -> None:
    """Keep Ray's INFO banners, progress notices and deprecation warnings off stderr (`--verbose` keeps them).

    Ray configures its Python loggers when it is imported, so their level is lowered after the import; Ray's C++
    core-worker lines are dropped by the CLI's stderr filter (graphport/cli/_quiet.py).
    """
    import logging

    import ray.data  # noqa: F401

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Rate:
    """Patches through the model per second since the engine started: one clock, read by the progress bar while
    the run goes and by the summary at its end, so the two report the same rate."""

    def __init__(self) -> None:
        self.start, self.end, self.patches = time.perf_counter(), None, 0

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start

    def stop(self) -> None:
        self.end = time.perf_counter()

    def text(self) -> str:
        seconds = self.seconds
        return f"{self.patches / seconds:.0f} patches/s" if seconds > 0 and self.patches else ""


def _predict(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from graphport.predict.job import PredictRequest, execute, prepare_run

    wanted = [s.strip() for s in args.outputs.split(",") if s.strip()] if args.outputs else None
    req = PredictRequest(args.model, args.audio, Path(args.out), args.patch_size, args.patch_hop, args.last_patch,
                         wanted, args.format, args.batch, args.memory_budget, args.engine, args.backend,
                         args.threads, args.actors, args.ray_address, args.precision)
    run = prepare_run(req, log=lambda s: console.print(s, highlight=False))
    if run.batch_note:
        console.print(f"--batch auto: {run.batch_note}", highlight=False)
    if run.skipped:
        console.print(f"{run.skipped} of {len(run.items)} files already done in {args.out}; skipping them")
    rate = _Rate()
    with _progress(console, run, rate) as on_progress:
        try:
            summary = execute(run, on_progress)
        except KeyboardInterrupt:
            on_progress.bar.stop()
            console.print(f"[red]interrupted[/]: {on_progress.files} finished files are in {args.out}; run the same "
                          "command again to resume.")
            return 130
        rate.stop()
        on_progress.show_rate()  # the bar's last figure is the summary's
    written = run.outputs.finalize(run.items)
    _print_summary(console, summary, args, written, rate, run.threads)
    return 1 if summary.failed else 0


class _ProgressBar:
    """The bar's callback for the engine: patches advance it, each finished file counts, a failed one is named."""

    def __init__(self, bar, task, todo: int, rate: _Rate) -> None:
        self.bar, self.task, self.todo, self.rate, self.files = bar, task, todo, rate, 0

    def __call__(self, n: int, res) -> None:
        if res is not None:
            self.files += 1
            if res.error:
                self.bar.console.print(f"[yellow]skipped[/] {escape(str(res.item.path))}: {escape(res.error)}",
                                       highlight=False)
        self.rate.patches += n
        self.bar.update(self.task, advance=n, files=f"{self.files}/{self.todo} files", rate=self.rate.text())

    def show_rate(self) -> None:
        self.bar.update(self.task, rate=self.rate.text())


@contextlib.contextmanager
def _progress(console: Console, run, rate: _Rate):
    """A progress bar over the patches the files will give (from their headers)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from graphport.predict import estimate_patches

    total = sum(estimate_patches(it.path, run.cfg) for it in run.todo)
    with Progress(TextColumn("{task.fields[files]}"), BarColumn(), TextColumn("{task.completed:.0f} patches"),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=False,
                  disable=not run.todo) as bar:
        task = bar.add_task("predict", total=total or None, files=f"0/{len(run.todo)} files", rate="")
        yield _ProgressBar(bar, task, len(run.todo), rate)


def _print_summary(console: Console, s: Summary, args: argparse.Namespace, written: list, rate: _Rate,
                   threads: Threads) -> None:
    """Files, patches, speed (the progress bar's clock) and the settings they were measured with; then the CPU
    split between model and front end; then any failed files, as a table."""
    from rich.table import Table

    ok = len(s.results) - len(s.failed)
    local = args.engine == "local"
    speed = (f"; {rate.patches} patches in {rate.seconds:.2f} s ({rate.text()}, batch {s.batch}, engine {args.engine}, "
             f"backend {args.backend}{f', threads {threads}' if local else ''}, precision {s.precision}, "
             f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})") if rate.patches else ""
    console.print(f"[bold]{ok} files predicted[/], {s.skipped_done} already done, {len(s.failed)} failed{speed}",
                  highlight=False)
    if rate.patches and local:
        model_cpu = s.cpu_s - s.frontend_s
        share = f" = {100 * s.frontend_s / model_cpu:.0f} % of the model's {model_cpu:.2f} s" if model_cpu > 0 else ""
        console.print(f"model {s.model_s:.2f} s in session.run; CPU: front end {s.frontend_s:.2f} s{share} "
                      "(overlapped with the model)", highlight=False)
    elif rate.patches:
        console.print(f"model {s.model_s:.2f} s, front end {s.frontend_s:.2f} s (in Ray tasks)", highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if s.failed:
        t = Table(title="failed files (skipped)", show_edge=False)
        t.add_column("file")
        t.add_column("reason")
        for r in s.failed:
            t.add_row(escape(str(r.item.path)), escape(r.error))
        console.print(t)
