"""Is any TF graph of the same net faster than graphport's? (issue #25)

Contestants, per architecture (Keras's EfficientNetB0, MobileNetV2 and ResNet50 at the seed's input, 128x96x1,
random weights with BatchNorm statistics calibrated on random batches):
- `keras`: the net written natively in Keras, frozen to a flat GraphDef (`convert_variables_to_constants_v2`);
- `graphport`: the same net and weights through ONNX (tf2onnx from the frozen graph, NCHW input as a PyTorch
  export has), converted by graphport; `graphport bf16` is that graph with oneDNN's bf16 rewrite (oneDNN on, on a
  CPU with AVX-512 BF16 or AMX; runtime/precision.py);
- `onnx2tf`: the same ONNX through onnx2tf (its own venv; version and flags pinned below). With a dynamic batch
  (and with `-b N` alone) it fails on these ONNX files (a Conv or Mul whose channels it tracks wrongly), so it gets
  one conversion per batch size with the whole input shape fixed (`-ois`), as its error message advises;
- `ort`: ONNX Runtime on the same ONNX, the limit rather than the bar (benchmarks/kernel_floor.py).
Inside Essentia (`TensorflowPredict`, libtensorflow 2.5, oneDNN off as Essentia runs), the B0 graphs run at B=64
too: graphport's of the seed and of Keras's net against the native Keras graph.
A fourth row, `seed`, is the seed B0 (a PyTorch export, efficientnet_pytorch): graphport, onnx2tf (dynamic batch
with `-kat`) and ORT on its ONNX, against the Keras EfficientNetB0 as the natively written net.

Every TF contestant runs through the TF 2.21 C API with a host's default session options (as Essentia's
TensorflowPredict), each in a fresh process per oneDNN setting; ORT in a process of its own (beside TF it runs
2-3x slower). Rounds alternate the order; each cell is the median over rounds of per-process medians. Every
contestant's output at batch 2 is compared with ORT's before its times count.

Needs `pip install -e '.[bench]'` (tf2onnx); onnx2tf's venv (~/.cache/graphport/onnx2tf-venv, TF 2.19 inside) is
built on first use. Keras's nets need no download (weights=None).

usage: python benchmarks/tf_floor.py [--archs effnetb0,mobilenetv2,resnet50,seed] [--rounds 2] [--cache DIR]
       [--seconds 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KERAS_ARCHS = {"effnetb0": "EfficientNetB0", "mobilenetv2": "MobileNetV2", "resnet50": "ResNet50"}
BATCHES = (1, 16, 64)
ONNX2TF = "1.29.24"
ONNX2TF_FLAGS = ["-osd"]  # the serving signature; plus `-ois NAME:N,1,128,96` (Keras ONNX) or `-kat NAME` (seed)
TF2ONNX_OPSET = 17
FIXTURES = Path(os.environ.get("GRAPHPORT_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
SEED_ONNX = FIXTURES / "seed-effnet-b0" / "effnet_opset11_dynamic.onnx"
CHECK_BATCH = 2


def build_keras(arch: str, out: Path) -> None:
    """(child process) keras.pb and model.onnx of `arch`: random weights, BatchNorm moments set from a random batch
    (momentum 0, one training-mode call), so that the output depends on the input."""
    import keras
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, KERAS_ARCHS[arch])(weights=None, input_shape=(128, 96, 1))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.1, layer.beta.shape).astype(np.float32))
    model(rng.standard_normal((32, 128, 96, 1)).astype(np.float32), training=True)
    spec = tf.TensorSpec([None, 128, 96, 1], tf.float32, name="melspectrogram")
    frozen = convert_variables_to_constants_v2(tf.function(lambda x: model(x, training=False)).get_concrete_function(spec))
    graph_def = frozen.graph.as_graph_def()
    (out / "keras.pb").write_bytes(graph_def.SerializeToString())
    tf2onnx.convert.from_graph_def(graph_def, input_names=["melspectrogram:0"], output_names=["Identity:0"],
                                   opset=TF2ONNX_OPSET, inputs_as_nchw=["melspectrogram:0"],
                                   output_path=str(out / "model.onnx"))


def onnx2tf(onnx_path: Path, out: Path, flags: list[str]) -> Path | None:
    """onnx2tf's SavedModel of `onnx_path` (None when it fails; its log is kept beside)."""
    from graphport.runtime.venvs import ensure_venv, venv_dir

    if (out / "saved_model.pb").exists():
        return out
    python = ensure_venv(venv_dir("onnx2tf-venv", "GRAPHPORT_ONNX2TF_VENV"), [f"onnx2tf=={ONNX2TF}"], "onnx2tf",
                         ONNX2TF)
    shim = out.parent / "bin"  # onnx2tf calls the `onnxsim` command; a renamed venv's scripts have stale shebangs
    shim.mkdir(exist_ok=True)
    (shim / "onnxsim").write_text(f'#!/bin/sh\nexec "{python}" -m onnxsim "$@"\n')
    (shim / "onnxsim").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    copy = out.parent / f"{out.name}.input.onnx"  # onnx2tf overwrites its input with the simplified model
    shutil.copyfile(onnx_path, copy)
    proc = subprocess.run([str(python), "-m", "onnx2tf", "-i", str(copy), "-o", str(out), *ONNX2TF_FLAGS,
                           *flags], capture_output=True, text=True, env=env, check=False)
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    return out if proc.returncode == 0 and (out / "saved_model.pb").exists() else None


def prepare(cache: Path, archs: list[str]) -> dict[str, dict[str, dict[int, Path] | Path]]:
    """{row: {contestant: {batch: model path}}} (one path for every batch where the model is dynamic)."""
    import graphport

    rows: dict[str, dict] = {}
    for arch in archs:
        d = cache / arch
        d.mkdir(parents=True, exist_ok=True)
        keras_arch = "effnetb0" if arch == "seed" else arch
        kd = cache / keras_arch
        if not (kd / "model.onnx").exists():
            kd.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, __file__, "--build", keras_arch, str(kd)], check=True)
        onnx_path = SEED_ONNX if arch == "seed" else kd / "model.onnx"
        if not (d / "graphport" / "model.pb").exists():
            report = graphport.convert(onnx_path, d / "graphport", force=True)
            if not report.ok:
                raise SystemExit(f"{arch}: graphport's verification failed")
        row = {"onnx": {b: onnx_path for b in BATCHES},
               "keras": {} if arch == "seed" else {b: kd / "keras.pb" for b in BATCHES},
               "graphport": {b: d / "graphport" / "model.pb" for b in BATCHES}}
        if arch == "seed":
            found = onnx2tf(onnx_path, d / "onnx2tf", ["-kat", "melspectrogram"])
            row["onnx2tf"] = {b: found for b in BATCHES} if found else {}
        else:
            row["onnx2tf"] = {b: p for b in BATCHES
                              if (p := onnx2tf(onnx_path, d / f"onnx2tf_b{b}", ["-ois", f"melspectrogram:0:{b},1,128,96"]))}
        rows[arch] = row
    return rows


def feed_for(shape: list, batch: int, seed: int) -> np.ndarray:
    """The input at `batch`, in the model's own layout; with one channel, NCHW, NHWC and [N,128,96] share memory.
    Row i is the same for every batch of a seed."""
    x = np.random.default_rng(seed).standard_normal((batch, 128 * 96)).astype(np.float32)
    return x.reshape(batch, *[d for d in shape[1:]])


def worker(job: dict) -> dict:
    """(child process) Per batch: the median seconds of runs over at least job['seconds'] (at least 3 runs, after a
    warm-up); plus the output at CHECK_BATCH, for the comparison with ORT."""
    from graphport.runtime.model_info import resolve

    paths = {int(b): p for b, p in job["paths"].items()}
    result: dict = {"median_s": {}}
    sessions: dict[str, object] = {}

    def session(path: str):
        if path not in sessions:
            info = resolve(path)
            if job["runtime"] == "ort":
                import onnxruntime as ort

                s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                name = s.get_inputs()[0].name
                sessions[path] = (lambda x, s=s, name=name: s.run(None, {name: x})[0], info.inputs[0].shape)
            else:
                from graphport.runtime.capi import CAPISession, session_config

                config = session_config(bf16=True) if job.get("bf16") else None
                s = CAPISession(path, config=config)
                feed, fetch = info.inputs[0].tensor, info.outputs[0].tensor
                sessions[path] = (lambda x, s=s, feed=feed, fetch=fetch: s.run({feed: x}, [fetch])[0],
                                  info.inputs[0].shape)
        return sessions[path]

    # the check rows: the first CHECK_BATCH rows of a seeded draw (a larger draw starts with the same rows), at a
    # fixed-batch model's own batch
    check = min((b for b in paths if job["dynamic"] or b >= CHECK_BATCH), default=None)
    if check is not None:
        run, shape = session(paths[check])
        n = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else CHECK_BATCH  # a symbolic dim is a name
        result["check"] = run(feed_for(shape, n, 7))[:CHECK_BATCH].tolist()
    for b, path in paths.items():
        run, shape = session(path)
        x = feed_for(shape, b, b)
        run(x)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < job["seconds"]:
            t = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - t)
        result["median_s"][b] = statistics.median(times)
    return result


def contestants(row: dict, bf16: bool) -> list[tuple[str, str, bool, dict]]:
    """(name, runtime, bf16, paths) of a row; onnx2tf's per-batch models are not dynamic. The seed's row has no
    Keras graph of its own: its natively written net is effnetb0's (another set of weights), see `report`."""
    out = [("graphport", "tf", False, row["graphport"])]
    out += [("keras", "tf", False, row["keras"])] if row["keras"] else []
    out += [("graphport bf16", "tf", True, row["graphport"])] if bf16 else []
    out += [("onnx2tf", "tf", False, row["onnx2tf"])] if row["onnx2tf"] else []
    return out


def measure(rows: dict, rounds: int, seconds: float) -> dict:
    """{row: {contestant: {setting: {batch: [medians]}}}, plus the check outputs' max abs vs ORT."""
    from graphport.runtime.precision import bf16_obstacle

    bf16 = bf16_obstacle(onednn=True) is None
    times: dict = {r: {} for r in rows}
    errors: dict = {r: {} for r in rows}
    cells = [(r, name, rt, b16, paths, setting) for r, row in rows.items() for setting in ("on", "off")
             for name, rt, b16, paths in contestants(row, bf16) if not (b16 and setting == "off")]
    cells += [(r, "ort", "ort", False, row["onnx"], "-") for r, row in rows.items()]
    refs: dict = {}
    for k in range(rounds):
        order = cells[k % len(cells):] + cells[:k % len(cells)]
        order = order if k % 2 == 0 else order[::-1]
        for r, name, rt, b16, paths, setting in order:
            job = {"runtime": rt, "bf16": b16, "seconds": seconds, "dynamic": name != "onnx2tf" or r == "seed",
                   "paths": {b: str(p) for b, p in paths.items()}}
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            if setting != "-":
                env["TF_ENABLE_ONEDNN_OPTS"] = "1" if setting == "on" else "0"
            proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                                  text=True, env=env, check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(f"{r} / {name} / oneDNN {setting}: failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            res = json.loads(lines[-1])
            cell = times[r].setdefault(name, {}).setdefault(setting, {})
            for b, s in res["median_s"].items():
                cell.setdefault(int(b), []).append(s)
            if "check" in res:
                if name == "ort":
                    refs[r] = np.asarray(res["check"])
                errors[r].setdefault(name, {})[setting] = np.asarray(res["check"])
            print(f"round {k + 1}: {r} / {name} / {setting}: " + ", ".join(
                f"B={b} {s * 1e3:.1f} ms" for b, s in res["median_s"].items()), file=sys.stderr, flush=True)
    max_abs = {r: {n: {s: float(np.abs(v - refs[r]).max()) if v.shape == refs[r].shape else None
                       for s, v in per.items()} for n, per in errors[r].items()} for r in rows if r in refs}
    return {"times": times, "max_abs_vs_ort": max_abs}


def essentia(rows: dict, rounds: int, runs: int = 5) -> dict[str, list[float]]:
    """Seconds per B=64 batch in Essentia's TensorflowPredict (libtensorflow 2.5, oneDNN off, default options) of
    the EfficientNet-B0 graphs: graphport's of the seed and of Keras's net, and the native Keras graph."""
    from graphport.runtime.essentia_host import essentia_run, host_op_name
    from graphport.runtime.model_info import resolve

    graphs = {"seed / graphport": rows.get("seed", {}).get("graphport", {}).get(64),
              "effnetb0 / graphport": rows.get("effnetb0", {}).get("graphport", {}).get(64),
              "effnetb0 / native Keras": rows.get("effnetb0", {}).get("keras", {}).get(64)}
    graphs = {k: p for k, p in graphs.items() if p}
    times: dict[str, list[float]] = {k: [] for k in graphs}
    for k in range(rounds):
        for name in (list(graphs) if k % 2 == 0 else list(graphs)[::-1]):
            info = resolve(graphs[name])
            shape = info.inputs[0].shape
            res = essentia_run(graphs[name], host_op_name(info.inputs[0].tensor), host_op_name(info.outputs[0].tensor),
                               [feed_for(shape, 64, 64)], 900, steady_runs=runs, squeeze=len(shape) == 3)
            if not res["ok"]:
                print(f"Essentia / {name}: {res['error'][:300]}", file=sys.stderr)
                continue
            times[name].append(res["steady_s"][0])
            print(f"round {k + 1}: Essentia / {name}: B=64 {res['steady_s'][0] * 1e3:.1f} ms", file=sys.stderr,
                  flush=True)
    return times


def _ms(v: float | None) -> str:
    return f"{v * 1e3:.1f}" if v else "-"


def _ratio(a: float | None, c: float | None) -> str:
    return f"{a / c:.2f}" if a and c else "-"


def report(result: dict) -> str:
    """The markdown table: medians in ms, and graphport's ratio to each other graph (lower is better)."""
    head = ("| net | oneDNN | B | graphport | native Keras | onnx2tf | graphport bf16 | ORT | gp / Keras | "
            "gp / onnx2tf | gp / ORT | gp bf16 / ORT |")
    lines = [head, "|---|---|---:|" + "---:|" * 10]
    times = result["times"]
    for r, per in times.items():
        if r == "seed" and "effnetb0" in times:  # the natively written B0 is effnetb0's Keras graph
            per = {**per, "keras": times["effnetb0"].get("keras", {})}
        med = {(n, s, b): statistics.median(v) for n, sets in per.items() for s, c in sets.items() for b, v in c.items()}
        for setting in ("on", "off"):
            for b in BATCHES:
                gp, ke, o2t = (med.get((n, setting, b)) for n in ("graphport", "keras", "onnx2tf"))
                ort = med.get(("ort", "-", b))
                gb = med.get(("graphport bf16", "on", b)) if setting == "on" else None
                lines.append(f"| {r} | {setting} | {b} | {_ms(gp)} | {_ms(ke)} | {_ms(o2t)} | {_ms(gb)} | {_ms(ort)} | "
                             f"{_ratio(gp, ke)} | {_ratio(gp, o2t)} | {_ratio(gp, ort)} | {_ratio(gb, ort)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="effnetb0,mobilenetv2,resnet50,seed")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per batch size and process")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/graphport-tf-floor"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-essentia", action="store_true", help="skip the B=64 runs in Essentia's TensorflowPredict")
    ap.add_argument("--build", nargs=2, metavar=("ARCH", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--worker", metavar="JOB", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build:
        build_keras(args.build[0], Path(args.build[1]))
        return {}
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return {}
    rows = prepare(args.cache, [a for a in args.archs.split(",") if a])
    result = measure(rows, args.rounds, args.seconds)
    result["essentia_b64_s"] = {} if args.no_essentia else essentia(rows, args.rounds)
    print(report(result))
    print("max abs vs ORT at batch 2:", json.dumps(result["max_abs_vs_ort"]))
    for name, ts in result["essentia_b64_s"].items():
        print(f"Essentia TensorflowPredict, B=64, {name}: {_ms(statistics.median(ts)) if ts else '-'} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
