"""The floor under graph rewrites (issue #15): one op, each runtime in its own native layout, TF against ORT.

Why: a converter chooses which ops a graph holds, not how fast TF runs each of them. This times single ops that
make up the zoo's models (dense, pointwise and depthwise convs, a Linear, Softmax, LayerNorm's moments, GELU) as
the best graph a converter could emit for them, TF ops in NHWC with no Transpose, against the same ops in an ONNX
model in ORT (NCHW, its native layout). When TF's kernel alone is slower than ORT by a factor, no
rewrite brings a model made of such ops under that factor.

Each runtime runs in a fresh process of its own (ORT beside TF ran 2-3x slower, docs/performance.md), TF once per
oneDNN setting; the processes alternate for --rounds rounds and the medians of their per-op medians are printed.

usage: python benchmarks/kernel_floor.py [--batch 16] [--rounds 3] [--seconds 1.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name: (ONNX op, NCHW-or-tokens input shape without the batch, weight shape or None, ONNX attributes); each op gives
# its input's shape back, so that a chain of them measures the op alone (see `child`).
KERNELS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...] | None, dict]] = {
    "conv 3x3 64->64 @32x32": ("Conv", (64, 32, 32), (64, 64, 3, 3), {"pads": [1, 1, 1, 1]}),
    "conv 1x1 128->128 @32x32": ("Conv", (128, 32, 32), (128, 128, 1, 1), {}),
    "depthwise 3x3 x96 @32x32": ("Conv", (96, 32, 32), (96, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 96}),
    "linear 192->192 x197": ("MatMul", (197, 192), (192, 192), {}),
    "softmax 3x197x197": ("Softmax", (3, 197, 197), None, {"axis": -1}),
    "x - mean(x) 197x192": ("Centre", (197, 192), None, {}),
    "erf 197x768": ("Erf", (197, 768), None, {}),
}
CHAIN = 5  # ops in the long chain; the short one has 1


def onnx_model(op: str, shape: tuple[int, ...], weight: np.ndarray | None, attrs: dict, count: int):
    """An opset-13 model of `count` such ops in a chain, with a dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, name = [], "x"
    for i in range(count):
        out = f"y{i}"
        if op == "Centre":
            nodes += [helper.make_node("ReduceMean", [name], [f"m{i}"], axes=[-1]),
                      helper.make_node("Sub", [name, f"m{i}"], [out])]
        else:
            nodes.append(helper.make_node(op, [name, "w"] if weight is not None else [name], [out], **attrs))
        name = out
    inits = [numpy_helper.from_array(weight, "w")] if weight is not None else []
    graph = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def tf_op(op: str, x, weight: np.ndarray | None, attrs: dict):
    """The TF op a converter would emit for the ONNX node on channels-last data."""
    import tensorflow as tf

    if op == "Conv":
        padding = "SAME" if attrs.get("pads") else "VALID"
        if attrs.get("group", 1) > 1:  # [C, 1, kh, kw] -> [kh, kw, C, 1]
            return tf.nn.depthwise_conv2d(x, weight.transpose(2, 3, 0, 1), [1, 1, 1, 1], padding)
        return tf.nn.conv2d(x, weight.transpose(2, 3, 1, 0), 1, padding)
    if op == "MatMul":
        return tf.reshape(tf.matmul(tf.reshape(x, [-1, weight.shape[0]]), weight), tf.shape(x))
    return {"Softmax": lambda: tf.nn.softmax(x), "Centre": lambda: x - tf.reduce_mean(x, -1, keepdims=True),
            "Erf": lambda: tf.math.erf(x)}[op]()


def time_runs(run, seconds: float) -> float:
    """Median seconds of `run()` over at least `seconds` and 10 runs, after two warm-ups."""
    run(), run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 10 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def child(kind: str, batch: int, seconds: float) -> None:
    """Time every kernel in this process's runtime (`ort` or `tf`) and print {name: seconds per op} as JSON: the
    difference between a chain of CHAIN ops and a chain of one, over CHAIN - 1, so that feeding, fetching and the
    call itself (0.1 ms in ORT, 0.4 ms in TF for a 4 MB tensor) cancel out, as they do inside a model."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (op, shape, wshape, attrs) in KERNELS.items():
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        w = (rng.standard_normal(wshape) / np.sqrt(np.prod(wshape[1:]))).astype(np.float32) if wshape else None
        per_chain = []
        for count in (1, CHAIN):
            if kind == "ort":
                import onnxruntime as ort

                sess = ort.InferenceSession(onnx_model(op, shape, w, attrs, count).SerializeToString(),
                                            providers=["CPUExecutionProvider"])
                per_chain.append(time_runs(lambda: sess.run(None, {"x": x}), seconds))  # noqa: B023 (used at once)
                continue
            import tensorflow as tf

            feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if op == "Conv" else x
            graph = tf.Graph()
            with graph.as_default():
                ph = y = tf.compat.v1.placeholder(tf.float32, [None, *feed.shape[1:]])
                for _ in range(count):
                    y = tf_op(op, y, w, attrs)
            with tf.compat.v1.Session(graph=graph) as sess:
                per_chain.append(time_runs(lambda: sess.run(y, {ph: feed}), seconds))  # noqa: B023
        out[name] = (per_chain[1] - per_chain[0]) / (CHAIN - 1)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.batch, args.seconds)
        return
    from graphport.runtime.child import run_child

    contestants = {"ort": ("ort", {}), "tf off": ("tf", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
                   "tf on": ("tf", {"TF_ENABLE_ONEDNN_OPTS": "1"})}
    runs: dict[str, list[dict]] = {c: [] for c in contestants}
    for _ in range(args.rounds):
        for label, (kind, env) in contestants.items():
            res = run_child([__file__, "--child", kind, "--batch", str(args.batch), "--seconds", str(args.seconds)],
                            timeout=600, env=env)
            if res.value is None:
                raise SystemExit(f"{label}: {res.error}")
            runs[label].append(res.value)
    med = {c: {k: statistics.median(r[k] for r in rs) for k in KERNELS} for c, rs in runs.items()}
    print(f"batch {args.batch}, load average {os.getloadavg()[0]:.2f}, milliseconds per op, medians of {args.rounds} "
          "rounds")
    print(f"{'kernel':28} {'ORT':>7} {'TF off':>7} {'off/ORT':>8} {'TF on':>7} {'on/ORT':>7}")
    for k in KERNELS:
        o, off, on = (med[c][k] for c in contestants)
        print(f"{k:28} {1e3 * o:7.3f} {1e3 * off:7.3f} {off / o:7.2f}x {1e3 * on:7.3f} {on / o:6.2f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(med, indent=2) + "\n")


if __name__ == "__main__":
    main()
