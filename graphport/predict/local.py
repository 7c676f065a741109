"""The local engine: front-end threads make patches, the main thread runs the model, files are written as they end.

The front end (decode, mel, patching) runs in its own threads, so it overlaps inference: numpy's FFT releases the
GIL, and so does the model while TF computes (libsamplerate, through `samplerate`, holds it). With several front-end
threads, each takes whole files, so a file's patches stay in order; one packer fills `[batch, patch, 96]` buffers
from all of them, across file boundaries, so the model never idles at a file's end and only the last batch is short.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphport.audio import N_BANDS, SAMPLE_RATE, AudioError, decode_chunks, stream_patches
from graphport.audio.frontend import frame_count
from graphport.predict.files import Item, Outputs, PredictConfig
from graphport.predict.model import check_model_input, pick_outputs

SILENCE_PEAK = 1e-6  # -120 dBFS: below this a file is digital silence (plus dither-free rounding), not music


@dataclass
class FileResult:
    """One file's outcome; `error` set means it was skipped and is listed in the summary."""

    item: Item
    patches: int = 0
    error: str | None = None


@dataclass
class Summary:
    """What a run did and what it cost, for the CLI's summary and for API callers."""

    results: list[FileResult] = field(default_factory=list)
    skipped_done: int = 0
    patches: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0  # time inside session.run
    frontend_s: float = 0.0  # local engine: CPU seconds of the front-end threads (decode + mel + patching)
    cpu_s: float = 0.0  # local engine: CPU seconds of the whole process during the run (model + front end)
    batch: int = 0
    precision: str = "fp32"  # what the model computed in (runtime/precision.py)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.error]


def file_patches(path: Path, cfg: PredictConfig) -> Iterator[np.ndarray]:
    """Patch arrays of one file; raises AudioError (after the last patch) if it is empty, silent or too short."""
    peak, samples, count = 0.0, 0, 0

    def chunks():
        nonlocal peak, samples
        for c in decode_chunks(path):
            samples += c.size
            peak = max(peak, float(c.max(initial=0.0)), -float(c.min(initial=0.0)))
            yield c

    for p in stream_patches(chunks(), cfg.patch_size, cfg.patch_hop, cfg.last_patch_mode):
        count += len(p)
        yield p
    if samples == 0:
        raise AudioError("empty: no audio samples")
    if peak < SILENCE_PEAK:
        raise AudioError(f"silent: peak {peak:.1e} < {SILENCE_PEAK:g} (digital silence)")
    if count == 0:
        frames = frame_count(samples)
        raise AudioError(f"too short: {samples / SAMPLE_RATE:.2f} s gives {frames} frames, fewer than one patch "
                         f"({cfg.patch_size}); Essentia's lastPatchMode='discard' yields no prediction either "
                         "(--last-patch repeat makes one)")


@dataclass
class _Piece:
    """Patches of file `index`; `end` marks its last message, with `error` set if the file failed and `rows` (set by
    the packer) the number of its rows that went into batches."""

    index: int
    patches: np.ndarray | None = None
    end: bool = False
    error: str | None = None
    rows: int = 0


def _file_pieces(index: int, item: Item, cfg: PredictConfig) -> Iterator[_Piece]:
    """One file as pieces, ending with its end marker; a file that cannot be used ends with the reason instead."""
    try:
        for p in file_patches(item.path, cfg):
            yield _Piece(index, p)
    except AudioError as e:
        yield _Piece(index, end=True, error=str(e).removeprefix(f"cannot decode '{item.path}': "))
        return
    yield _Piece(index, end=True)


class _CPU:
    """Front-end CPU seconds, summed over the threads that spend them (time.thread_time at each thread's end)."""

    def __init__(self) -> None:
        self.seconds, self._lock = 0.0, threading.Lock()

    def add_this_thread(self, since: float) -> None:
        with self._lock:
            self.seconds += time.thread_time() - since


def _pieces(items: list[Item], cfg: PredictConfig, workers: int, stop: threading.Event, cpu: _CPU) -> Iterator[_Piece]:
    """Every file's pieces; with `workers` > 1, files are decoded in parallel threads, one file per thread."""
    if workers == 1 or len(items) == 1:
        for idx, it in enumerate(items):
            yield from _file_pieces(idx, it, cfg)
        return
    q: queue.Queue = queue.Queue(maxsize=2 * workers)
    counter = itertools.count()  # next() on it is atomic, so each index goes to exactly one worker

    def put(msg: object) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def work() -> None:
        t = time.thread_time()
        try:
            for idx in iter(counter.__next__, None):
                if idx >= len(items) or not all(put(p) for p in _file_pieces(idx, items[idx], cfg)):
                    break
        except BaseException as e:  # noqa: BLE001 -- handed to the packer, which re-raises it
            put(e)
        cpu.add_this_thread(t)
        put(None)

    threads = [threading.Thread(target=work, name=f"graphport-frontend-{i}", daemon=True) for i in range(workers)]
    for th in threads:
        th.start()
    running = workers
    while running:
        msg = q.get()
        if msg is None:
            running -= 1
        elif isinstance(msg, BaseException):
            raise msg
        else:
            yield msg


@dataclass
class _Batch:
    """Patches for one model run, and which file each run of rows belongs to: (item index, row count)."""

    patches: np.ndarray
    owners: list[tuple[int, int]]


@dataclass
class _Crash:
    """The front end died; the main thread re-raises."""

    error: BaseException


_END = object()  # the front end has sent everything


def run_local(session, items: list[Item], outputs: Outputs, cfg: PredictConfig, batch: int,
              on_progress: Callable[[int, FileResult | None], None] = lambda n, r: None,
              frontend_threads: int = 1) -> Summary:
    """Predict every item with `session` at `batch`; batches span files; failed files are reported, not fatal.

    `frontend_threads` files are decoded in parallel (the model's threads are the session's own setting).
    """
    input_name, shape_in = check_model_input(session, cfg.patch_size)
    names = pick_outputs(session, cfg.outputs)
    summary = Summary(batch=batch)
    cpu = _CPU()
    q: queue.Queue[_Batch | _Piece | _Crash | object] = queue.Queue(maxsize=3)  # at most ~4 batches of patches exist
    stop = threading.Event()

    def produce() -> None:
        t = time.thread_time()
        buf, owners, fill = np.empty((batch, cfg.patch_size, N_BANDS), np.float32), [], 0
        rows: dict[int, int] = {}
        try:
            for piece in _pieces(items, cfg, frontend_threads, stop, cpu):
                p = piece.patches
                while p is not None and len(p):
                    take = min(batch - fill, len(p))
                    buf[fill:fill + take] = p[:take]
                    owners.append((piece.index, take))
                    rows[piece.index] = rows.get(piece.index, 0) + take
                    fill, p = fill + take, p[take:]
                    if fill == batch:
                        q.put(_Batch(buf, owners))
                        buf, owners, fill = np.empty_like(buf), [], 0
                if stop.is_set():
                    return
                if piece.end:
                    piece.rows = rows.pop(piece.index, 0)
                    q.put(piece)
            if fill:
                q.put(_Batch(buf[:fill], owners))
            q.put(_END)
        except BaseException as e:  # noqa: BLE001 -- re-raised in the main thread, which owns the run
            q.put(_Crash(e))
        finally:
            cpu.add_this_thread(t)

    results: dict[int, list[dict[str, np.ndarray]]] = {}
    got: dict[int, int] = {}
    expected: dict[int, tuple[int, str | None]] = {}

    def settle(idx: int) -> None:
        if idx not in expected or got.get(idx, 0) < expected[idx][0]:
            return
        count, error = expected.pop(idx)
        parts = results.pop(idx, [])
        res = FileResult(items[idx], count, error)
        if error is None:
            outputs.write(items[idx], {k: np.concatenate([p[k] for p in parts]) for k in names})
            summary.patches += count
        summary.results.append(res)
        on_progress(0, res)

    start, cpu_start = time.perf_counter(), _process_cpu()
    producer = threading.Thread(target=produce, name="graphport-frontend", daemon=True)
    producer.start()
    try:
        while True:
            msg = q.get()
            if msg is _END:
                break
            if isinstance(msg, _Crash):
                raise msg.error
            if isinstance(msg, _Piece):  # a file ended; its rows went into this batch or earlier ones
                expected[msg.index] = (msg.rows, msg.error)
                settle(msg.index)
                continue
            x = msg.patches
            t = time.perf_counter()
            out = session.run({input_name: shape_in(x)})
            summary.model_s += time.perf_counter() - t
            at = 0
            for idx, n in msg.owners:
                results.setdefault(idx, []).append({k: out[k][at:at + n] for k in names})
                got[idx] = got.get(idx, 0) + n
                at += n
                settle(idx)
            on_progress(len(x), None)
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
    summary.wall_s = time.perf_counter() - start
    summary.frontend_s, summary.cpu_s = cpu.seconds, _process_cpu() - cpu_start
    return summary


def _process_cpu() -> float:
    t = os.times()
    return t.user + t.system
