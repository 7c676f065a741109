"""The files side of `predict`: the inputs found on the command line, and OUT's layout, manifest and writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphport.audio import AUDIO_EXTENSIONS, SAMPLE_RATE
from graphport.audio.frontend import HOP_SIZE, frame_count, patch_count
from graphport.core.atomic import write_file
from graphport.core.errors import GraphportError

MANIFEST = "graphport-predict.json"


@dataclass
class PredictConfig:
    """What decides the numbers in the output; a resumed run must use the same (checked via the manifest)."""

    patch_size: int = 128
    patch_hop: int = 62
    last_patch_mode: str = "discard"
    outputs: list[str] | None = None  # None: every model output
    fmt: str = "npy"
    precision: str = "fp32"  # what the session computes in (runtime/precision.py), after 'auto' is decided


@dataclass
class Item:
    """One input file and the name its output gets."""

    path: Path
    key: str  # output name relative to OUT, unique per run


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


class Outputs:
    """OUT's layout: one <key>.npz per file (npy), or parts/<key>.parquet merged into predictions.parquet."""

    def __init__(self, out: Path, cfg: PredictConfig, fingerprint: str):
        self.out, self.cfg = out, cfg
        manifest = {"model_sha256": fingerprint, "patch_size": cfg.patch_size, "patch_hop": cfg.patch_hop,
                    "last_patch_mode": cfg.last_patch_mode, "outputs": cfg.outputs, "format": cfg.fmt}
        if cfg.precision != "fp32":  # fp32 leaves the manifest as it was, so that earlier outputs resume
            manifest["precision"] = cfg.precision
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
