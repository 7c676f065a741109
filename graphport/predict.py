"""`graphport predict`: audio files -> Essentia-compatible mel patches -> batched predictions, written per file.

Essentia's TensorflowPredictEffnetDiscogs runs one file at a fixed batch of 64 and zero-pads the audio to fill the
last batch. graphport's graphs take any batch, so here patches of consecutive files share batches (the model never
idles at a file's end), the last batch is simply smaller, and the batch size comes from memory (`--batch auto`).

The local engine decodes and computes patches in a producer thread (numpy's FFT and matmul release the GIL) while
the main thread runs the model, so the front end overlaps inference. Results are split back per file and each file
is written atomically (temporary name, then rename) as soon as its last patch is predicted: an interrupted run keeps
every finished file, and a rerun skips them (`Outputs.done`).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphport import model_json
from graphport.atomic import publish_dir, staging_dir, write_file
from graphport.audio import AUDIO_EXTENSIONS, N_BANDS, SAMPLE_RATE, AudioError, decode_chunks, stream_patches
from graphport.audio.frontend import HOP_SIZE, frame_count, patch_count
from graphport.errors import GraphportError

SILENCE_PEAK = 1e-6  # -120 dBFS: below this a file is digital silence (plus dither-free rounding), not music
MANIFEST = "graphport-predict.json"


@dataclass
class PredictConfig:
    """What decides the numbers in the output; a resumed run must use the same (checked via the manifest)."""

    patch_size: int = 128
    patch_hop: int = 62
    last_patch_mode: str = "discard"
    outputs: list[str] | None = None  # None: every model output
    fmt: str = "npy"


@dataclass
class Item:
    path: Path
    key: str  # output name relative to OUT, unique per run


@dataclass
class FileResult:
    """One file's outcome; `error` set means it was skipped and is listed in the summary."""

    item: Item
    patches: int = 0
    error: str | None = None


@dataclass
class Summary:
    results: list[FileResult] = field(default_factory=list)
    skipped_done: int = 0
    patches: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0  # time inside session.run
    frontend_s: float = 0.0  # decode + mel + patching (overlapped with the model in the local engine)
    batch: int = 0

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.error]


def cache_dir() -> Path:
    env = os.environ.get("GRAPHPORT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graphport"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_model(model: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """A loadable graphport model for `model`; an .onnx is converted once and cached by its sha256."""
    p = Path(model)
    if not p.exists():
        raise GraphportError(f"model '{p}' does not exist.")
    if p.suffix.lower() != ".onnx":
        return p
    target = cache_dir() / "converted" / file_sha256(p)
    if model_json.is_output_folder(target):
        return target
    from graphport.converter import convert

    log(f"converting {p.name} (cached in {target})")
    with staging_dir(target) as tmp:
        report = convert(p, tmp / "out")
        if not report.ok:
            raise GraphportError(f"converting '{p}' failed verification against ONNX Runtime; run `graphport "
                                 "convert` for the details.")
        publish_dir(tmp / "out", target)  # False: another run cached it first, which is as good
    return target


def model_fingerprint(model_path: Path) -> str:
    files = sorted(f for f in model_path.rglob("*") if f.is_file()) if model_path.is_dir() else [model_path]
    return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()


def collect_inputs(paths: list[str]) -> list[Item]:
    """Files as given, and audio files found under directories; output keys are made unique or refused."""
    items: list[Item] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise GraphportError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under '{p}'.")
            items += [Item(f, str(f.relative_to(p))) for f in found]
        elif p.exists() or p.is_symlink():
            items.append(Item(p, p.name))
        else:
            raise GraphportError(f"input '{p}' does not exist.")
    seen: dict[str, Path] = {}
    for it in items:
        if it.key in seen and seen[it.key].resolve() != it.path.resolve():
            raise GraphportError(f"'{seen[it.key]}' and '{it.path}' would both write '{it.key}'; pass their parent "
                                 "directory instead, so that outputs keep the relative paths.")
        seen[it.key] = it.path
    return list({it.key: it for it in items}.values())


def check_model_input(session, patch_size: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The input name and a reshape from [B, patch, 96] to what the model takes ([B,T,96] or [B,1,T,96])."""
    if len(session.inputs) != 1:
        raise GraphportError(f"predict feeds one mel input; the model has {len(session.inputs)}: "
                             f"{[i.name for i in session.inputs]}.")
    spec = session.inputs[0]
    shape = list(spec.shape) if spec.shape is not None else None
    want = [patch_size, N_BANDS]
    fixed = [d if isinstance(d, int) else None for d in (shape or [])]
    if shape is not None and len(shape) == 3 and all(d in (None, w) for d, w in zip(fixed[1:], want)):
        return spec.name, lambda x: x
    if shape is not None and len(shape) == 4 and fixed[1] in (None, 1) and all(
            d in (None, w) for d, w in zip(fixed[2:], want)):
        return spec.name, lambda x: x[:, None]
    if spec.dtype != "float32":
        raise GraphportError(f"input '{spec.name}' is {spec.dtype}; the mel front end makes float32.")
    shown = ["?" if d is None else d for d in fixed] if shape is not None else "unknown"
    raise GraphportError(f"model input '{spec.name}' has shape {shown}, but the front end makes patches of shape "
                         f"[batch, {patch_size}, {N_BANDS}] (TensorflowInputMusiCNN: {N_BANDS} mel bands, "
                         f"--patch-size {patch_size} frames), also accepted as [batch, 1, {patch_size}, {N_BANDS}].")


def pick_outputs(session, wanted: list[str] | None) -> list[str]:
    names = [o.name for o in session.outputs]
    if not wanted:
        return names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise GraphportError(f"unknown output(s) {unknown}; the model has {names}.")
    return wanted


class Outputs:
    """OUT's layout: one <key>.npz per file (npy), or parts/<key>.parquet merged into predictions.parquet."""

    def __init__(self, out: Path, cfg: PredictConfig, fingerprint: str):
        self.out, self.cfg = out, cfg
        manifest = {"model_sha256": fingerprint, "patch_size": cfg.patch_size, "patch_hop": cfg.patch_hop,
                    "last_patch_mode": cfg.last_patch_mode, "outputs": cfg.outputs, "format": cfg.fmt}
        mpath = out / MANIFEST
        if out.exists() and not out.is_dir():
            raise GraphportError(f"output '{out}' exists and is not a directory.")
        if mpath.exists():
            old = json.loads(mpath.read_text())
            if old != manifest:
                diff = {k: (old.get(k), v) for k, v in manifest.items() if old.get(k) != v}
                raise GraphportError(f"'{out}' holds predictions made with other settings {diff} (was, now); use "
                                     "another -o, or delete it.")
        out.mkdir(parents=True, exist_ok=True)
        write_file(mpath, json.dumps(manifest, indent=2))

    def path_for(self, key: str) -> Path:
        return self.out / (key + ".npz") if self.cfg.fmt == "npy" else self.out / "parts" / (key + ".parquet")

    def done(self, key: str) -> bool:
        return self.path_for(key).exists()

    def write(self, item: Item, outputs: dict[str, np.ndarray]) -> None:
        """Write one file's patch-wise outputs, their mean and patch start times, atomically."""
        n = len(next(iter(outputs.values())))
        start_s = np.arange(n) * self.cfg.patch_hop * HOP_SIZE / SAMPLE_RATE
        target = self.path_for(item.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.cfg.fmt == "npy":
            arrays = {**outputs, **{f"{k}_mean": v.mean(axis=0) for k, v in outputs.items()}, "start_s": start_s,
                      "path": np.array(str(item.path))}
            write_file(target, lambda f: np.savez(f, **arrays))
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {"path": pa.array([str(item.path)] * n), "patch_index": pa.array(np.arange(n, dtype=np.int32)),
                "start_s": pa.array(start_s)}
        for k, v in outputs.items():
            flat = np.ascontiguousarray(v.reshape(n, -1), dtype=np.float32)
            cols[k] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
        write_file(target, lambda f: pq.write_table(pa.table(cols), f))

    def finalize(self, items: list[Item]) -> list[Path]:
        """Parquet: merge the finished parts into predictions.parquet and means.parquet (one row per file)."""
        if self.cfg.fmt != "parquet":
            return []
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(self.path_for(it.key)) for it in items if self.done(it.key)]
        if not tables:
            return []
        table = pa.concat_tables(tables)
        means = {"path": [t["path"][0].as_py() for t in tables]}
        for name in [c for c in table.column_names if c not in ("path", "patch_index", "start_s")]:
            rows = [np.stack(t[name].to_numpy(zero_copy_only=False)).mean(axis=0) for t in tables]
            means[name] = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(rows)), len(rows[0]))
        paths = [self.out / "predictions.parquet", self.out / "means.parquet"]
        write_file(paths[0], lambda f: pq.write_table(table.sort_by([("path", "ascending"), ("patch_index", "ascending")]), f))
        write_file(paths[1], lambda f: pq.write_table(pa.table(means), f))
        return paths


def estimate_patches(path: Path, cfg: PredictConfig) -> int:
    """Patches a file will give, from its header alone (0 if unreadable): the progress bar's total."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):  # counted 0 here; the decoder reports it
        return 0
    n = int(info.frames * SAMPLE_RATE / info.samplerate) if info.samplerate else 0
    return patch_count(frame_count(n), cfg.patch_size, cfg.patch_hop, cfg.last_patch_mode)


@dataclass
class Stopwatch:
    """Seconds accumulated by the code that holds it (the front end's share of a run)."""

    seconds: float = 0.0


def file_patches(path: Path, cfg: PredictConfig, timing: Stopwatch | None = None) -> Iterator[np.ndarray]:
    """Patch arrays of one file; raises AudioError (after the last patch) if it is empty, silent or too short."""
    peak, samples, count = 0.0, 0, 0
    t = time.perf_counter()

    def chunks():
        nonlocal peak, samples
        for c in decode_chunks(path):
            samples += c.size
            peak = max(peak, float(np.abs(c).max()))
            yield c

    for p in stream_patches(chunks(), cfg.patch_size, cfg.patch_hop, cfg.last_patch_mode):
        count += len(p)
        if timing is not None:
            timing.seconds += time.perf_counter() - t
        yield p
        t = time.perf_counter()
    if timing is not None:
        timing.seconds += time.perf_counter() - t
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
class _Batch:
    """Patches for one model run, and which file each run of rows belongs to: (item index, row count)."""

    patches: np.ndarray
    owners: list[tuple[int, int]]


@dataclass
class _FileDone:
    """The front end finished a file: how many patches it gave, or why it gave none."""

    index: int
    patches: int
    error: str | None


@dataclass
class _Crash:
    """The front end thread died; the main thread re-raises."""

    error: BaseException


_END = object()  # the front end has sent everything


def run_local(session, items: list[Item], outputs: Outputs, cfg: PredictConfig, batch: int,
              on_progress: Callable[[int, FileResult | None], None] = lambda n, r: None) -> Summary:
    """Predict every item with `session` at `batch`; batches span files; failed files are reported, not fatal."""
    input_name, shape_in = check_model_input(session, cfg.patch_size)
    names = pick_outputs(session, cfg.outputs)
    summary = Summary(batch=batch)
    timing = Stopwatch()
    q: queue.Queue[_Batch | _FileDone | _Crash | object] = queue.Queue(maxsize=3)  # bounds memory: at most ~4 batches of patches exist at once
    stop = threading.Event()

    def produce() -> None:
        buf, owners, fill = np.empty((batch, cfg.patch_size, N_BANDS), np.float32), [], 0
        try:
            for idx, it in enumerate(items):
                count, error = 0, None
                try:
                    for p in file_patches(it.path, cfg, timing):
                        while len(p):
                            take = min(batch - fill, len(p))
                            buf[fill:fill + take] = p[:take]
                            owners.append((idx, take))
                            fill, count, p = fill + take, count + take, p[take:]
                            if fill == batch:
                                q.put(_Batch(buf, owners))
                                buf, owners, fill = np.empty_like(buf), [], 0
                            if stop.is_set():
                                return
                except AudioError as e:
                    error = str(e).removeprefix(f"cannot decode '{it.path}': ")
                q.put(_FileDone(idx, count, error))
            if fill:
                q.put(_Batch(buf[:fill], owners))
            q.put(_END)
        except BaseException as e:  # noqa: BLE001 -- re-raised in the main thread, which owns the run
            q.put(_Crash(e))

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

    start = time.perf_counter()
    producer = threading.Thread(target=produce, name="graphport-frontend", daemon=True)
    producer.start()
    try:
        while True:
            msg = q.get()
            if msg is _END:
                break
            if isinstance(msg, _Crash):
                raise msg.error
            if isinstance(msg, _FileDone):
                expected[msg.index] = (msg.patches, msg.error)
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
    summary.frontend_s = timing.seconds
    return summary
