"""A whole `predict` run as a library: the model made loadable and loaded, the inputs still to do, the batch size,
then the engine (local or Ray). The CLI (`cli/predict_command.py`) only parses arguments, draws the progress bar
and prints; anything that calls `predict` from Python gets the same run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graphport.runtime.backends import load, warm_up

if TYPE_CHECKING:  # imported when the run starts, while libtensorflow loads (prepare_run)
    from graphport.predict.files import Item, Outputs, PredictConfig
    from graphport.predict.local import FileResult, Summary
    from graphport.predict.threads import Threads


@dataclass
class PredictRequest:
    """What the user asked for (the `predict` options)."""

    model: str
    audio: list[str]
    out: Path
    patch_size: int | None = None  # None: the algorithm's in the model's Essentia JSON, else 128
    patch_hop: int | None = None  # None: likewise, else 62
    last_patch: str | None = None  # None: likewise, else "discard"
    outputs: list[str] | None = None  # default: all
    fmt: str = "npy"  # or "parquet"
    batch: int | str = "auto"  # "auto": memory-aware (runtime/batch_size.py)
    memory_budget_gib: float | None = None
    engine: str = "local"  # or "ray"
    backend: str = "capi"
    threads: tuple[int, int] | None = None  # local engine: (model, front end); default: auto_threads()
    actors: int = 1
    ray_address: str | None = None
    precision: str = "fp32"  # fp32 | bf16 | auto (runtime/precision.py)


@dataclass
class PreparedRun:
    """Everything decided before the first patch: the loaded session, what is left to do, and at which batch."""

    request: PredictRequest
    cfg: PredictConfig
    model: Path
    session: object
    names: list[str]
    items: list[Item]
    todo: list[Item]
    outputs: Outputs
    threads: Threads
    batch: int
    batch_note: str | None  # why --batch auto chose its size

    @property
    def skipped(self) -> int:
        """Files finished by an earlier run, which this one skips."""
        return len(self.items) - len(self.todo)


def prepare_run(req: PredictRequest, log: Callable[[str], None]) -> PreparedRun:
    """Convert (once, cached) or resolve the model, load it, check its input, list the files not done yet, and
    probe the batch size when it is 'auto' and anything is left to run."""
    loader = threading.Thread(target=_preload, daemon=True)
    if req.backend == "capi" and req.engine == "local" and not str(req.model).lower().endswith(".onnx"):
        loader.start()
    from graphport.predict.files import Outputs, PredictConfig, collect_inputs
    from graphport.predict.model import check_model_input, model_fingerprint, pick_outputs, prepare_model
    from graphport.predict.threads import Threads, auto_threads

    threads = Threads(*req.threads) if req.threads else auto_threads()
    items = collect_inputs(req.audio)
    model = prepare_model(req.model, log=log, backend=req.backend)
    if loader.ident is not None:
        loader.join()
    session = load(model, req.backend, threads.model if req.engine == "local" else None, req.precision)
    cfg = PredictConfig(*patching(req), req.outputs, req.fmt, session.precision)
    check_model_input(session, cfg.patch_size)
    names = pick_outputs(session, cfg.outputs)
    outputs = Outputs(Path(req.out), cfg, model_fingerprint(session.info.path))
    todo = [it for it in items if not outputs.done(it.key)]
    batch, note = req.batch, None
    if batch == "auto" and not todo:
        batch = 1  # nothing left to run: no probe (its runs take seconds), and the size is moot
    elif batch == "auto":
        from graphport.runtime.batch_size import pick_batch_size

        budget = int(req.memory_budget_gib * 1024**3) if req.memory_budget_gib else None
        choice = pick_batch_size(session, budget=budget)
        batch, note = choice.batch, choice.explain()
    return PreparedRun(req, cfg, model, session, names, items, todo, outputs, threads, int(batch), note)


def patching(req: PredictRequest) -> tuple[int, int, str]:
    """(patch size, hop, last-patch mode): what the user chose, else what the algorithm named in the model's Essentia
    JSON does (its sample rate checked against the front end's), else TensorflowPredictEffnetDiscogs' defaults."""
    from graphport.audio import LAST_PATCH_MODES, PATCH_HOP, PATCH_SIZE
    from graphport.audio.essentia_algorithms import patching_for
    from graphport.core.errors import GraphportError
    from graphport.core.essentia_metadata import read_beside

    meta = read_beside(req.model) if Path(req.model).exists() else None
    given = req.patch_size is not None and req.patch_hop is not None
    defaults = patching_for(meta.algorithm, meta.sample_rate, given) if meta else None
    size = req.patch_size or (defaults.patch_size if defaults else PATCH_SIZE)
    hop = req.patch_hop or (defaults.patch_hop if defaults else PATCH_HOP)
    last = req.last_patch or (defaults.last_patch if defaults else LAST_PATCH_MODES[0])
    if hop > size:
        raise GraphportError(f"--patch-hop ({hop}) must not exceed --patch-size ({size}).")
    return size, hop, last


def _preload() -> None:
    """Loading libtensorflow_cc takes seconds; dlopen releases the GIL, so it overlaps the imports and the input
    scan. A failure is left to load(), which makes the same call in the main thread, where it is seen. Not for an
    .onnx: its conversion imports TF's Python package first, and takes far longer anyway."""
    with contextlib.suppress(Exception):
        warm_up("capi")


def execute(run: PreparedRun, on_progress: Callable[[int, FileResult | None], None]) -> Summary:
    """Predict every file left, on the chosen engine; failed files are in the summary, not raised."""
    from graphport.predict.local import run_local

    req = run.request
    if req.engine == "local":
        summary = run_local(run.session, run.todo, run.outputs, run.cfg, run.batch, on_progress, run.threads.frontend)
    else:
        run.session.close()
        from graphport.predict.ray_engine import run_ray

        summary = run_ray(run.model, req.backend, run.todo, run.outputs, run.cfg, run.batch, req.actors,
                          req.ray_address, run.names, on_progress)
    summary.skipped_done, summary.precision = run.skipped, run.cfg.precision
    return summary
