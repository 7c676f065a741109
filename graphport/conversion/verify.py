"""Prove the emitted graph equal to ONNX Runtime on seeded random inputs, and batch invariant, under both oneDNN
settings.

A host decides whether TF uses oneDNN (TF 2.21 turns it on by itself on CPUs with AVX-512 VNNI/BF16 or AMX), and
some oneDNN kernels crash or miscompute (docs/onednn.md). So the graph runs once per setting, each in a worker
process where a crash is a finding, not the end of `convert`.

Tolerance: elementwise `atol + rtol * |ref|`, plus a floor for float summation order, which scales with the whole
output rather than each element: `max(SCALE_RTOL * max|ref|, NOISE_FACTOR * ORT's own float-order noise)`. ORT's
noise is the larger of its batch variance (its batch-1 run of a row against the same row inside its batch-N run)
and its change when its graph optimisations (fusions) are turned off: both only reorder float arithmetic, so they
show how much this model amplifies rounding. A deep random-init EfficientNetV2 moves by 9e-3 on outputs of 128
that way, and TF's Eigen kernels by 1.4e-2 at batch 64. A wrong axis, broadcast or weight layout is off by the
order of the output itself, far above that floor.

Quantized models get a floor in quantization steps as well (`QUANT_STEPS`): a float op between quantized ones
(Conv2D's summation order, Sigmoid's last bit) now and then puts a value on the other side of a rounding boundary,
and the one-step jump travels on. ORT's own sessions disagree that way by up to 7 steps (docs/quantization.md),
while a wrong layout or scale is off by a large part of the output's range.

bf16 (runtime/precision.py) is measured too where the CPU runs it, and only reported: the fp32 graph is what is
proven, and `--precision auto` keeps fp32 for a model whose bf16 outputs leave `BF16_FACTOR` bf16 epsilons of their
scale (max |ORT|). The seed B0 moved by 1.7 epsilons that way (8.1e-3 on outputs of 0.61).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from graphport.conversion.dim_sizes import DimPlan
from graphport.core.errors import GraphportError
from graphport.ir.graph import Graph
from graphport.runtime.capi import session_config
from graphport.runtime.feeds import batch_symbols, seeded_feeds
from graphport.runtime.isolated import GraphRunError, IsolatedGraph, KernelCrash, onednn_label
from graphport.runtime.model_info import IOInfo
from graphport.runtime.precision import BF16_EPS, bf16_obstacle
from graphport.runtime.reference import reference_session

DEFAULT_BATCH_SIZES = (1, 3, 64)
ONEDNN_SETTINGS = (False, True)
SCALE_RTOL = 1e-5
NOISE_FACTOR = 8.0
NOISE_ROWS = 16  # rows of the largest batch that ORT also runs unoptimised: enough to see the model's float noise
QUANT_STEPS = 4  # measured: at most 3.0 output steps from ORT on the quantized example EfficientNets
BF16_FACTOR = 4.0  # bf16 epsilons of an output's scale that bf16 may move it by
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                       "MatMulInteger", "ConvInteger"})


@dataclass
class OutputCheck:
    batch: int
    output: str
    onednn: str
    max_abs: float
    max_rel: float
    ok: bool
    dims: dict[str, int] = field(default_factory=dict)  # sizes of the free symbolic dims (dim_sizes)


@dataclass
class RunFailure:
    """TF crashed or refused the graph: which setting, at which batch size (None: while loading), and why."""

    onednn: str
    batch: int | None
    message: str


@dataclass
class Bf16Verdict:
    """The graph with oneDNN's bf16 rewrite against ORT's fp32: `ok` None where it did not run (`reason` says why);
    `tolerance` per output is BF16_FACTOR * BF16_EPS * its scale, plus its fp32 floor."""

    ok: bool | None = None
    reason: str | None = None
    factor: float = BF16_FACTOR
    tolerance: dict[str, float] = field(default_factory=dict)
    checks: list[OutputCheck] = field(default_factory=list)


@dataclass
class VerifyResult:
    checks: list[OutputCheck] = field(default_factory=list)
    failures: list[RunFailure] = field(default_factory=list)
    batch_invariance: float = 0.0
    batch_invariance_ok: bool = True
    noise_floor: dict[str, float] = field(default_factory=dict)
    atol: float = 1e-4
    rtol: float = 1e-3
    bf16: Bf16Verdict = field(default_factory=Bf16Verdict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and self.batch_invariance_ok and not self.failures

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def compare(ref: np.ndarray, got: np.ndarray, atol: float, rtol: float,
            floor: float = 0.0) -> tuple[float, float, bool]:
    """(max abs, max rel, ok): NaN and inf must match exactly, finite values within atol + rtol*|ref| + floor."""
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
    ok = nan_same and inf_same and bool(np.all(diff <= atol + floor + rtol * np.abs(ref64[finite])))
    return max_abs, max_rel, ok


@dataclass
class Cases:
    """The verification inputs: seeded feeds per (batch size, size set), single rows of the largest batch (batch
    invariance) and the rows ORT also runs unoptimised (its float-order noise)."""

    feeds: dict[tuple[int, int], dict[str, np.ndarray]]
    singles: dict[int, dict[str, np.ndarray]]
    probe: dict[str, np.ndarray]
    sizes: tuple[int, ...]
    variants: list[dict[str, int]]
    big: tuple[int, int]
    rows: list[int]
    batch: set[str]


def verification_cases(graph: Graph, batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES, seed: int = 0,
                       dims: DimPlan | None = None) -> Cases:
    """Every batch size at the first size set of `dims` (graphport.conversion.dim_sizes.plan_sizes), the two smallest batch
    sizes at each further set."""
    dims = dims or DimPlan()
    specs = input_specs(graph)
    batch = batch_symbols(specs) | set(dims.batch_like)
    in_axes = {n: _batch_axis(graph.values[n].shape, batch) for n in graph.inputs}
    batched = any(a is not None for a in in_axes.values())
    sizes = tuple(batch_sizes) if batched else tuple(batch_sizes[:1])
    variants = dims.sizes or [{}]
    cases = [(b, 0) for b in sizes] + [(b, v) for v in range(1, len(variants)) for b in sorted(sizes)[:2]]
    feeds = {(b, v): seeded_feeds(specs, b, seed + b + 1000 * v, dims.dims(v, b)) for b, v in cases}
    big = (max(sizes), 0)
    rows = sorted({0, big[0] - 1}) if batched and big[0] > 1 else []
    singles = {r: {k: _rows(x, in_axes[k], r, r + 1) for k, x in feeds[big].items()} for r in rows}
    probe = {k: _rows(x, in_axes[k], 0, NOISE_ROWS) for k, x in feeds[big].items()}
    return Cases(feeds, singles, probe, sizes, variants, big, rows, batch)


def start_reference(onnx_bytes: bytes, graph: Graph, cases: Cases) -> Future:
    """ORT's outputs for `cases`, computed in a thread from now on: the converter starts it before TensorFlow is
    imported and the graph emitted, which need no ORT and leave the second core free (ORT releases the GIL)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="graphport-reference")
    future = pool.submit(_ort_run, onnx_bytes, graph.outputs, cases.feeds, cases.singles, cases.probe)
    pool.shutdown(wait=False)
    return future


def verify(onnx_bytes: bytes, graph: Graph, graph_def, tf_names: tuple[dict, dict],
           batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES, atol: float = 1e-4, rtol: float = 1e-3,
           seed: int = 0, settings: tuple[bool, ...] = ONEDNN_SETTINGS,
           dims: DimPlan | None = None, cases: Cases | None = None, reference: Future | None = None) -> VerifyResult:
    """Compare the GraphDef (fed and fetched through `tf_names` = (inputs, outputs) op maps) with ORT, on `cases`
    (else those of `batch_sizes`, `seed` and `dims`), with ORT's outputs from `reference` when it was started
    already (start_reference)."""
    cases = cases or verification_cases(graph, batch_sizes, seed, dims)
    reference = reference or start_reference(onnx_bytes, graph, cases)
    feeds, singles, sizes, variants, big, rows, batch = (cases.feeds, cases.singles, cases.sizes, cases.variants,
                                                         cases.big, cases.rows, cases.batch)
    bf16_reason = bf16_obstacle(onednn=True) if True in settings else "oneDNN on was not among the settings verified"
    with ThreadPoolExecutor(len(settings) + 1) as pool:
        jobs = {s: pool.submit(_tf_run, graph_def, tf_names, s, feeds, singles) for s in settings}
        bf16_job = None if bf16_reason else pool.submit(_tf_run, graph_def, tf_names, True, feeds, {},
                                                        session_config(bf16=True))
        runs = {s: j.result() for s, j in jobs.items()}
        bf16_run = bf16_job.result() if bf16_job else None
    refs, ref_singles, unfused = reference.result()
    out_axes = {n: _batch_axis(graph.values[n].shape if n in graph.values else None, batch,
                               [(b, refs[(b, 0)][n]) for b in sizes]) for n in graph.outputs}
    result = VerifyResult(atol=atol, rtol=rtol)
    floors = result.noise_floor
    steps = quantization_steps(graph)
    invariant = {}  # outputs whose rows ORT computes alike alone and in a batch (not Unique over columns, say)
    for name in graph.outputs:
        ax = out_axes[name]
        pairs = [(_rows(refs[big][name], ax, r, r + 1), ref_singles[r][name]) for r in rows] if ax is not None else []
        invariant[name] = bool(pairs) and all(a.shape == b.shape and compare(a, b, atol, rtol)[2] for a, b in pairs)
        scale = max((_max_abs(refs[c][name]) for c in feeds), default=0.0)
        noise = max([_max_abs(a, b) for a, b in pairs if invariant[name]]
                    + [_max_abs(unfused[name], _rows(refs[big][name], ax, 0, NOISE_ROWS))])
        floors[name] = max(SCALE_RTOL * scale, NOISE_FACTOR * noise,
                           _step_floor(steps[name], refs[big][name]) if name in steps else 0.0)
    result.bf16 = _bf16_verdict(bf16_run, bf16_reason, refs, graph.outputs, variants, floors)
    for setting, (got, got_singles, failure) in runs.items():
        label = onednn_label(setting)
        if failure is not None:
            result.failures.append(failure)
        for case in got:
            for name in graph.outputs:
                ref, out = (_as_steps(x, name in steps) for x in (refs[case][name], got[case][name]))
                max_abs, max_rel, ok = compare(ref, out, atol, rtol, floors[name])
                result.checks.append(OutputCheck(case[0], name, label, max_abs, max_rel, ok, variants[case[1]]))
        for r, single in got_singles.items():
            for name in (n for n in graph.outputs if invariant[n] and big in got):
                a, b = (_as_steps(x, name in steps) for x in (_rows(got[big][name], out_axes[name], r, r + 1),
                                                                   single[name]))
                d, _, ok = compare(a, b, atol, rtol, floors[name])
                result.batch_invariance = max(result.batch_invariance, d)
                result.batch_invariance_ok &= ok
    return result


def _bf16_verdict(run: tuple | None, reason: str | None, refs: dict, outputs: list[str], variants: list[dict],
                  floors: dict[str, float]) -> Bf16Verdict:
    if run is None:
        return Bf16Verdict(reason=reason)
    got, _, failure = run
    if failure is not None:
        return Bf16Verdict(False, f"bf16 run failed, {failure.message}")
    verdict = Bf16Verdict(True)
    for name in outputs:
        scale = max((_max_abs(refs[c][name]) for c in got), default=0.0)
        verdict.tolerance[name] = BF16_FACTOR * BF16_EPS * scale + floors[name]
    for case, values in got.items():
        for name in outputs:
            max_abs, max_rel, ok = compare(refs[case][name], values[name], verdict.tolerance[name], 0.0)
            verdict.checks.append(OutputCheck(case[0], name, "bf16", max_abs, max_rel, ok, variants[case[1]]))
            verdict.ok &= ok
    return verdict


def quantization_steps(graph: Graph) -> dict[str, float | None]:
    """One quantization step of each output that quantized ops compute (None: a uint8 step of its range).

    An output of `DequantizeLinear` steps by its (largest) constant scale; an integer output of a quantizing op by
    1; any other float output downstream of quantized ops by a uint8 step over its range, the resolution the
    quantized layers before it had. Graphs without quantized ops get none."""
    downstream: set[str] = set()
    for n in graph.nodes:
        if n.op_type in QUANT_OPS or downstream.intersection(n.inputs):
            downstream.update(n.outputs)
    producers = graph.producers()
    steps = {}
    for name in (o for o in graph.outputs if o in downstream):
        node = producers.get(name)
        scale = graph.const(node.inputs[1]) if node is not None and node.op_type == "DequantizeLinear" else None
        if scale is not None:
            steps[name] = float(np.max(np.abs(scale)))
        elif node is not None and node.op_type in QUANT_OPS and np.dtype(graph.values[name].dtype).kind in "iu":
            steps[name] = 1.0
        elif np.dtype(graph.values[name].dtype).kind == "f":
            steps[name] = None
    return steps


def _step_floor(step: float | None, ref: np.ndarray) -> float:
    """QUANT_STEPS steps; a step of None is a uint8 step over the range of `ref` (0 included)."""
    if step is None:
        v = ref[np.isfinite(ref)]
        step = (max(float(v.max()), 0.0) - min(float(v.min()), 0.0)) / 255 if v.size else 0.0
    return QUANT_STEPS * step


def _as_steps(x: np.ndarray, quantized: bool) -> np.ndarray:
    """Quantized integer outputs are compared as numbers (within the step floor), other integers exactly."""
    return x.astype(np.float64) if quantized and x.dtype.kind in "iu" else x


def input_specs(graph: Graph) -> list[IOInfo]:
    """The graph inputs as feed specs (name, shape with symbol names, dtype)."""
    return [IOInfo(n, graph.values[n].shape, str(np.dtype(graph.values[n].dtype))) for n in graph.inputs]


def _batch_axis(shape, batch: set[str], evidence: list[tuple[int, np.ndarray]] | None = None) -> int | None:
    """Where a value keeps its batch: the axis of a batch-named dim; else a leading dim of unknown size, if ORT's
    outputs (`evidence`: (batch size, output) pairs) show it following the batch. A data-dependent length (NonZero,
    Unique) does not, and has no batch axis."""
    axis = next((i for i, d in enumerate(shape) if d in batch), None) if shape is not None else None
    if axis is not None or (shape is not None and (not shape or shape[0] is not None)):
        return axis
    if evidence is not None and not all(np.ndim(out) and np.shape(out)[0] == b for b, out in evidence):
        return None
    return 0


def _rows(x: np.ndarray, axis: int | None, start: int, stop: int) -> np.ndarray:
    """Rows start:stop along the batch axis (the whole array when it has none)."""
    if axis is None or x.ndim <= axis:
        return x
    return x[(slice(None),) * axis + (slice(start, stop),)]


def _max_abs(x: np.ndarray, y: np.ndarray | None = None) -> float:
    """Largest |x - y| (or |x|); 0 for integers and for shapes that differ (a data-dependent length)."""
    if x.dtype.kind not in "fc" or (y is not None and x.shape != y.shape):
        return 0.0
    v = np.abs(x.astype(np.float64) - (0.0 if y is None else y.astype(np.float64)))
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else 0.0


def _ort_run(onnx_bytes: bytes, outputs: list[str], feeds: dict[tuple, dict], singles: dict[int, dict], probe: dict):
    """ORT's outputs per batch size and per single row, and on `probe` (rows of the largest batch) with its
    optimisations off."""
    sess, unfused = reference_session(onnx_bytes), reference_session(onnx_bytes, optimised=False)

    def run(s, f: dict) -> dict:
        try:
            return dict(zip(outputs, s.run(outputs, f)))
        except Exception as e:  # noqa: BLE001  ORT's errors carry no common base class
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in f.items())
            raise GraphportError(
                f"ONNX Runtime, the reference, cannot run this model on the verification inputs ({shapes}): "
                f"{str(e).strip().splitlines()[0]}. Pin inputs that select a branch with --fix-input NAME=VALUE, or "
                f"choose valid sizes for its dims with --verify-dim NAME=SIZE.") from None

    return ({b: run(sess, f) for b, f in feeds.items()}, {r: run(sess, f) for r, f in singles.items()},
            run(unfused, probe))


def _tf_run(graph_def, tf_names: tuple[dict, dict], onednn: bool, feeds: dict[tuple, dict],
            singles: dict[int, dict], config: bytes | None = None) -> tuple[dict, dict, RunFailure | None]:
    """Outputs per batch size and per single row, in a worker with `onednn` and a session with `config`; stops at
    the first crash or error."""
    got, got_singles, batch = {}, {}, None
    try:
        runner = IsolatedGraph(graph_def, *tf_names, onednn=onednn, config=config)
        try:
            for case, f in feeds.items():
                batch = case[0]
                got[case] = runner.run(f)
            for r, f in singles.items():
                batch = 1
                got_singles[r] = runner.run(f)
        finally:
            if runner.worker.alive:
                runner.close()
    except (KernelCrash, GraphRunError) as e:
        where = "loading the graph" if batch is None else f"running batch {batch}"
        return got, got_singles, RunFailure(onednn_label(onednn), batch, f"{where}: {e}")
    return got, got_singles, None
