"""Prove the emitted graph equal to ONNX Runtime on seeded random inputs, and batch invariant."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import onnxruntime as ort
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from graphport.ir.graph import Graph

DEFAULT_BATCH_SIZES = (1, 3, 64)
OTHER_SYMBOL_SIZE = 16  # value used for dynamic dims other than the leading batch (a time axis, say)


@dataclass
class OutputCheck:
    batch: int
    output: str
    max_abs: float
    max_rel: float
    ok: bool


@dataclass
class VerifyResult:
    checks: list[OutputCheck] = field(default_factory=list)
    batch_invariance: float = 0.0
    batch_invariance_ok: bool = True
    atol: float = 1e-4
    rtol: float = 1e-3

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.batch_invariance_ok

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


class TFGraphRunner:
    """Run a GraphDef in a tf.compat.v1 session, feeding and fetching by op name."""

    def __init__(self, graph_def: graph_pb2.GraphDef, inputs: dict[str, str], outputs: dict[str, str]):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.inputs, self.outputs = inputs, outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fetches = [f"{self.outputs[o]}:0" for o in self.outputs]
        values = self.session.run(fetches, {f"{self.inputs[k]}:0": v for k, v in feeds.items()})
        return dict(zip(self.outputs, values))

    def close(self) -> None:
        self.session.close()


def random_feeds(graph: Graph, batch: int, seed: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs; the first symbolic dim of each input is the batch, other symbols get fixed sizes."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        v = graph.values[name]
        shape = []
        for axis, d in enumerate(v.shape or ()):
            if isinstance(d, int):
                shape.append(d)
            elif axis == 0:
                shape.append(batch)
            else:
                shape.append((dims or {}).get(d, OTHER_SYMBOL_SIZE))
        dt = np.dtype(v.dtype)
        if dt.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[name] = rng.integers(0, 10, shape).astype(dt)
    return feeds


def compare(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float) -> tuple[float, float, bool]:
    if ref.shape != got.shape:
        return float("inf"), float("inf"), False
    if ref.dtype.kind not in "fc":
        same = bool(np.array_equal(ref, got))
        return 0.0 if same else float("inf"), 0.0 if same else float("inf"), same
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    nan_same = np.array_equal(np.isnan(ref64), np.isnan(got64))
    finite = np.isfinite(ref64) & np.isfinite(got64)
    inf_same = np.array_equal(ref64[~finite & ~np.isnan(ref64)], got64[~finite & ~np.isnan(got64)])
    diff = np.abs(ref64[finite] - got64[finite])
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(ref64[finite]), 1e-12)).max()) if diff.size else 0.0
    ok = nan_same and inf_same and bool(np.all(diff <= atol + rtol * np.abs(ref64[finite])))
    return max_abs, max_rel, ok


def verify(onnx_bytes: bytes, graph: Graph, runner: TFGraphRunner, batch_sizes=DEFAULT_BATCH_SIZES,
           atol: float = 1e-4, rtol: float = 1e-3, seed: int = 0) -> VerifyResult:
    has_batch = any(v is not None and v.shape and isinstance(v.shape[0], str)
                    for v in (graph.values[i] for i in graph.inputs))
    result = VerifyResult(atol=atol, rtol=rtol)
    sizes = batch_sizes if has_batch else batch_sizes[:1]
    feeds = {b: random_feeds(graph, b, seed + b) for b in sizes}
    # ORT computes the references while TF's first run spends its time in (single-threaded) Grappler.
    with ThreadPoolExecutor(1) as pool:
        refs = pool.submit(_ort_references, onnx_bytes, graph.outputs, feeds)
        got = {b: runner.run(feeds[b]) for b in sizes}
        refs = refs.result()
    for b in sizes:
        for name in graph.outputs:
            max_abs, max_rel, ok = compare(refs[b][name], got[b][name], atol, rtol)
            result.checks.append(OutputCheck(b, name, max_abs, max_rel, ok))
    if has_batch and max(sizes) > 1:
        _batch_invariance(graph, runner, feeds[max(sizes)], got[max(sizes)], result)
    return result


def _ort_references(onnx_bytes: bytes, outputs: list[str], feeds: dict[int, dict]) -> dict[int, dict]:
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return {b: dict(zip(outputs, sess.run(outputs, f))) for b, f in feeds.items()}


def _batch_invariance(graph: Graph, runner: TFGraphRunner, feeds: dict, got: dict, result: VerifyResult) -> None:
    """Row i of a batch-N run must equal a batch-1 run of row i (to 1e-5)."""
    batched = [i for i in graph.inputs if isinstance((graph.values[i].shape or (None,))[0], str)]
    for row in (0, next(iter(feeds.values())).shape[0] - 1):
        single = runner.run({k: (v[row:row + 1] if k in batched else v) for k, v in feeds.items()})
        for name in graph.outputs:
            if got[name].ndim == 0 or got[name].dtype.kind not in "fc":
                continue
            d = float(np.max(np.abs(got[name][row:row + 1].astype(np.float64) - single[name]), initial=0.0))
            result.batch_invariance = max(result.batch_invariance, d)
    result.batch_invariance_ok = result.batch_invariance <= 1e-5
