"""`graphport predict --engine ray`: the same pipeline as a Ray Data job, for collections beyond one machine.

read + decode + patch (`map_batches(batch_size=1)`, one file per call) and inference (`map_batches` on a fixed-size
`ActorPoolStrategy` pool, each actor loading the model once) ask for the same CPUs per worker, so Ray Data fuses
them into one actor operator: each actor decodes a file and runs its patches, holding its CPU share throughout, and
TF's thread pool in it is sized to that share. The driver writes each file as soon as all of its patches are back.
Writing in the driver keeps outputs where the user ran the command and keeps the atomic, resumable per-file writes
of the local engine; the model and audio paths must be readable on every worker node (a shared filesystem), since
workers open them by path.

A file that cannot be turned into patches becomes one marker row (patch_index -1, with the reason) that the actors
pass through without running the model, so failures reach the driver's summary like in the local engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphport.audio import N_BANDS, AudioError
from graphport.core.errors import GraphportError
from graphport.predict import FileResult, Item, Outputs, PredictConfig, Summary, file_patches


def _decode(rows: dict[str, np.ndarray], cfg: PredictConfig) -> dict[str, np.ndarray]:
    """One file -> its patch rows (or one marker row with the error)."""
    idx, path = int(rows["idx"][0]), str(rows["path"][0])
    t = time.perf_counter()
    try:
        parts = list(file_patches(Path(path), cfg))
        patches, error = np.concatenate(parts), ""
    except AudioError as e:
        patches, error = np.zeros((1, cfg.patch_size, N_BANDS), np.float32), str(e)
    n = len(patches)
    index = np.full(n, -1, np.int64) if error else np.arange(n)
    return {"idx": np.full(n, idx), "patch_index": index, "n_patches": np.full(n, 0 if error else n),
            "error": np.array([error] * n), "frontend_s": np.full(n, (time.perf_counter() - t) / n),
            "patch": patches}


class _Predictor:
    """Ray actor: one loaded session, reused for every batch it receives.

    `threads` is the actor's CPU share: TF's intra-op pool gets that many threads (inter-op 1), so actors sharing a
    node do not each start a pool of every core the node has and fight over them.
    """

    def __init__(self, model: str, backend: str, cfg: PredictConfig, threads: int, onednn: str | None):
        if onednn is not None:  # the driver's setting, as the host chose it
            os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", onednn)
        from graphport.predict import check_model_input, pick_outputs
        from graphport.runtime.backends import load

        self.session = load(model, backend, threads, cfg.precision)
        self.input, self.shape_in = check_model_input(self.session, cfg.patch_size)
        self.names = pick_outputs(self.session, cfg.outputs)

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = rows["patch_index"] >= 0
        out = {k: rows[k] for k in ("idx", "patch_index", "n_patches", "error", "frontend_s")}
        t = time.perf_counter()
        res = self.session.run({self.input: self.shape_in(rows["patch"][ok])}) if ok.any() else {}
        out["model_s"] = np.full(len(ok), (time.perf_counter() - t) / len(ok))
        for name in self.names:
            if name in res:
                full = np.full((len(ok), *res[name].shape[1:]), np.nan, np.float32)
                full[ok] = res[name]
                out[name] = full
            else:  # a batch of marker rows only: the shape is unknown, and the rows carry no outputs anyway
                out[name] = np.full((len(ok), 1), np.nan, np.float32)
        return out


def _actor_cpus(actors: int) -> int:
    """Whole CPUs per actor: the largest share that still places all `actors` on the cluster's live nodes.

    Per node, not the cluster total divided by `actors`: 3 actors on two 8-CPU nodes cannot get 5 CPUs each, and an
    actor that fits on no node would leave the fixed-size pool waiting for it forever. More actors than CPUs is
    refused for the same reason.
    """
    import ray

    nodes = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]
    if sum(nodes) < actors:
        raise GraphportError(f"--actors {actors} needs at least {actors} CPUs, but the Ray cluster has {sum(nodes)}; "
                             "use fewer actors or add nodes.")
    return max(c for c in range(1, max(nodes) + 1) if sum(n // c for n in nodes) >= actors)


def run_ray(model: Path, backend: str, items: list[Item], outputs: Outputs, cfg: PredictConfig, batch: int,
            actors: int, address: str | None, names: list[str],
            on_progress: Callable[[int, FileResult | None], None] = lambda n, r: None) -> Summary:
    """Run the job on Ray (`address` None: a local cluster started here) and write results as files complete."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cpus = _actor_cpus(actors)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    summary = Summary(batch=batch)
    start = time.perf_counter()
    ds = ray.data.from_items([{"idx": i, "path": str(it.path.absolute())} for i, it in enumerate(items)],
                             override_num_blocks=max(1, len(items)))
    ds = ds.map_batches(_decode, batch_size=1, fn_kwargs={"cfg": cfg}, batch_format="numpy", num_cpus=cpus)
    ds = ds.map_batches(_Predictor, batch_size=batch, batch_format="numpy", num_cpus=cpus,
                        compute=ray.data.ActorPoolStrategy(size=actors),
                        fn_constructor_kwargs={"model": str(model.absolute()), "backend": backend, "cfg": cfg,
                                               "threads": cpus, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS")})
    pending: dict[int, dict[str, list]] = {}
    for rows in ds.iter_batches(batch_size=None, batch_format="numpy"):
        summary.model_s += float(rows["model_s"].sum())
        summary.frontend_s += float(rows["frontend_s"].sum())
        on_progress(int((rows["patch_index"] >= 0).sum()), None)
        for idx in np.unique(rows["idx"]):
            sel = rows["idx"] == idx
            error = str(rows["error"][sel][0])
            if error:
                res = FileResult(items[int(idx)], 0, error)
                summary.results.append(res)
                on_progress(0, res)
                continue
            acc = pending.setdefault(int(idx), {"patch_index": [], **{k: [] for k in names}})
            for k in acc:
                acc[k].append(rows[k][sel])
            total = int(rows["n_patches"][sel][0])
            if sum(len(a) for a in acc["patch_index"]) == total:
                del pending[int(idx)]
                order = np.argsort(np.concatenate(acc["patch_index"]))
                outputs.write(items[int(idx)], {k: np.concatenate(acc[k])[order] for k in names})
                summary.patches += total
                res = FileResult(items[int(idx)], total)
                summary.results.append(res)
                on_progress(0, res)
    summary.wall_s = time.perf_counter() - start
    return summary
