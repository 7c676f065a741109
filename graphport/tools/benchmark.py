"""`graphport bench`: load and inference times per backend, each in a fresh, killable subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from graphport.core import model_json
from graphport.runtime.child import run_child
from graphport.runtime.model_info import ModelInfo, resolve
from graphport.runtime.precision import TF_BACKENDS, choose
from graphport.runtime.tf_hosts import split_backend


def applicable(path: Path, info: ModelInfo, backends: tuple[str, ...]) -> list[str]:
    """Backends that can run `path` (described by `info`): onnxruntime for .onnx; the TF ones for
    .pb/SavedModel/graphport output."""
    ok = {"onnx": {"onnxruntime"}, "pb": {"capi", "session", "essentia"},
          "saved_model": {"capi", "session", "tf2", "essentia"}}[info.kind]
    if model_json.is_output_folder(path):
        ok = ok | {"tf2"}
    return [b for b in backends if split_backend(b)[0] in ok]


def run_one(path: Path, backend: str, batch_sizes: list[int], repeat: int, timeout: float, onednn: bool,
            auto: bool = False, budget: int | None = None, precision: str = "fp32") -> dict:
    """Measure one (model, backend, oneDNN) cell; a timeout is reported, never waited out. `precision` is the
    one decided for the cell (tools.benchmark.bench), fp32 or bf16."""
    row = {"model": str(path), "backend": backend, "onednn": onednn, "precision": precision}
    if backend == "essentia":
        return row | _essentia(path, batch_sizes, repeat, timeout)
    from graphport.runtime.tf_hosts import host_env, host_python

    base, version = split_backend(backend)  # 'capi@2.17': the C API of TF 2.17, in its own venv
    job = json.dumps({"path": str(path), "backend": base, "batch_sizes": batch_sizes, "repeat": repeat,
                      "auto": auto, "budget": budget, "precision": precision})
    env = {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", **(host_env() if version else {})}
    res = run_child(["-m", "graphport.runtime.measure", job], timeout, env,
                    python=host_python(version) if version else None)
    if res.timed_out:
        return row | {"status": f"> {timeout:g} s (timed out)"}
    if res.value is None:
        return row | {"status": f"error: {res.error[:200]}"}
    return row | {"status": "ok"} | res.value


def _essentia(path: Path, batch_sizes: list[int], repeat: int, timeout: float) -> dict:
    from graphport.runtime.essentia_host import essentia_run, host_op_name
    from graphport.runtime.feeds import feeds_for

    info = resolve(path)
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        return {"status": "error: essentia runs single-input, single-output models"}
    op = [host_op_name(io.tensor) for io in (info.inputs[0], info.outputs[0])]
    batches = [next(iter(feeds_for(info, b, seed=b).values())) for b in batch_sizes]
    res = essentia_run(info.path, op[0], op[1], batches, timeout, steady_runs=repeat)
    if res.get("timed_out"):
        return {"status": f"> {timeout:g} s (timed out in stage '{res.get('stage')}')"}
    if not res.get("ok"):
        return {"status": f"error: {str(res.get('error'))[:200]}"}
    steady = {str(b): {"median_s": s, "patches_per_s": b / s} for b, s in zip(batch_sizes, res["steady_s"])}
    return {"status": "ok", "startup_s": res["import_s"], "load_s": res["load_s"], "first_run_s": res["first_run_s"],
            "first_batch": batch_sizes[0], "steady": steady}


def bench(models: list[Path], backends: tuple[str, ...], batch_sizes: list[int], repeat: int, timeout: float,
          onednn: tuple[bool, ...], console: Console, auto: bool = False, budget: int | None = None,
          precision: str = "fp32") -> list[dict]:
    """Rows of measurements; `precision` applies to the TF backends graphport configures (ORT and Essentia run
    fp32 beside them), and a bf16 that cannot run is refused before anything is measured."""
    cells = []
    for path in models:
        info = resolve(path)
        for backend in applicable(path, info, backends):
            for flag in (onednn if backend not in ("onnxruntime", "essentia") else (onednn[0],)):
                base = split_backend(backend)[0]
                chosen = choose(precision, base, flag, info.bf16_ok) if base in TF_BACKENDS else "fp32"
                cells.append((path, backend, flag, chosen))
    rows = []
    for path, backend, flag, chosen in cells:
        if auto and backend == "essentia":
            continue  # its memory lives in another process; the picker probes in-process sessions
        console.print(f"[dim]measuring {path.name} / {backend} / oneDNN {'on' if flag else 'off'} / {chosen}...[/]")
        rows.append(run_one(path, backend, batch_sizes, repeat, timeout, flag, auto, budget, chosen))
        if rows[-1].get("auto_batch"):
            console.print(f"  {backend}: {rows[-1]['auto_batch']['explain']}")
    return rows


def table(rows: list[dict], batch_sizes: list[int]) -> Table:
    t = Table(title="graphport bench (medians; each load in a fresh process)", show_edge=False)
    for col in ("model", "backend", "oneDNN", "precision", "library start-up", "load", "first run"):
        t.add_column(col)
    for b in batch_sizes:
        t.add_column("B=auto" if b == 0 else f"B={b}", justify="right")
    t.add_column("patches/s", justify="right")
    for r in rows:
        onednn = "-" if r["backend"] in ("onnxruntime", "essentia") else ("on" if r["onednn"] else "off")
        if r.get("status") != "ok":
            t.add_row(Path(r["model"]).name, r["backend"], onednn, r["precision"], "", f"[red]{r['status']}[/]", "",
                      *[""] * len(batch_sizes), "")
            continue
        steady = [r["steady"].get(str(b), {}) for b in batch_sizes] if batch_sizes != [0] else \
            list(r["steady"].values())
        cells = [f"{s['median_s'] * 1e3:.1f} ms" if "median_s" in s else "-" for s in steady]
        best = steady[-1].get("patches_per_s")
        t.add_row(Path(r["model"]).name, r["backend"], onednn, r["precision"], f"{r['startup_s']:.3f} s",
                  f"{r['load_s']:.3f} s", f"{r['first_run_s']:.3f} s", *cells, f"{best:.0f}" if best else "-")
    return t
