"""`convert`: ONNX file -> IR -> passes -> flat TF graph -> verified artifacts, written atomically."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from graphport import __version__
from graphport.artifacts import write_json, write_pb, write_saved_model
from graphport.emit.tf import build_graph_def
from graphport.emit.tf.batchdeps import batch_dependencies
from graphport.errors import GraphportError, OutputExists
from graphport.ir.from_onnx import load_model, to_ir
from graphport.passes import fix_inputs, optimize
from graphport.runtime.isolated import worker
from graphport.verify import DEFAULT_BATCH_SIZES, ONEDNN_SETTINGS, VerifyResult, verify


@dataclass
class ConversionReport:
    out_dir: Path | None
    seconds: float
    onnx_ops: dict[str, int]
    tf_ops: dict[str, int]
    verification: VerifyResult | None
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def tf_nodes(self) -> int:
        return sum(self.tf_ops.values())

    @property
    def transposes(self) -> int:
        return self.tf_ops.get("Transpose", 0)

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.ok


def convert(model: str | os.PathLike | onnx.ModelProto, out_dir: str | os.PathLike,
            batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES, verify_outputs: bool = True, force: bool = False,
            keep_failed: bool = False, atol: float = 1e-4, rtol: float = 1e-3,
            fix_inputs: dict[str, np.ndarray] | None = None) -> ConversionReport:
    """Convert `model` into `out_dir` (model.pb, saved_model/, model.json).

    If verification fails, `out_dir` is left as it was (with `keep_failed`, the artifacts go to OUTDIR.failed/).
    `fix_inputs` specialises the named inputs to constants (e.g. a sample rate that selects an `If` branch).
    """
    start = time.perf_counter()
    out = Path(out_dir).absolute()
    if any(b < 1 for b in batch_sizes):
        raise GraphportError(f"batch sizes must be >= 1, got {list(batch_sizes)}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        if out.exists() and not force:
            raise OutputExists(f"output directory '{out}' already exists; pass --force (force=True) to replace it.")
        return _convert(model, out, start, batch_sizes, verify_outputs, keep_failed, atol, rtol, fix_inputs)


@contextmanager
def _exclusive(out: Path):
    """One conversion at a time per output folder (a lock on the parent directory). Holding it, whatever a killed
    run left behind is stale: an output moved aside but not yet replaced is put back, temp folders are removed."""
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for old in out.parent.glob(f".{out.name}.old-*"):
            if not out.exists() and (old / "x").is_dir():
                os.rename(old / "x", out)
            shutil.rmtree(old, ignore_errors=True)
        for tmp in out.parent.glob(f".{out.name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        yield
    finally:
        os.close(fd)


def _convert(model, out: Path, start: float, batch_sizes: tuple[int, ...], verify_outputs: bool, keep_failed: bool,
             atol: float, rtol: float, fixed: dict[str, np.ndarray] | None) -> ConversionReport:
    proto, onnx_bytes = load_model(model)
    source = Path(model).read_bytes() if not isinstance(model, onnx.ModelProto) else onnx_bytes
    if fixed:  # ORT must verify against the same specialised model
        proto = fix_inputs(proto, fixed)
        onnx_bytes = proto.SerializeToString()
    graph = to_ir(proto)
    if verify_outputs:  # a valid model: TF's import in the workers overlaps with optimising and emitting here
        for setting in ONEDNN_SETTINGS:
            worker(setting)
    onnx_ops = graph.census()
    graph = optimize(graph)
    emitted = build_graph_def(graph)
    tf_ops = dict(Counter(n.op for n in emitted.graph_def.node).most_common())
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_pb(emitted, tmp / "model.pb")
        # Saving is Python-bound tracing, verification is kernel-bound: overlapping them saves about a second.
        with ThreadPoolExecutor(1) as pool:
            saving = pool.submit(write_saved_model, emitted, graph, tmp / "saved_model")
            result = verify(onnx_bytes, graph, emitted.graph_def, (emitted.inputs, emitted.outputs), batch_sizes,
                            atol, rtol) if verify_outputs else None
            names = saving.result()
        report = ConversionReport(None, 0.0, onnx_ops, tf_ops, result, warnings=_doctor_warnings(tmp))
        report.metadata = _metadata(graph, emitted, names, source, proto, report)
        report.seconds = time.perf_counter() - start
        report.metadata["conversion_seconds"] = round(report.seconds, 3)
        write_json(report.metadata, tmp / "model.json")
        if not report.ok:
            if keep_failed:
                _replace(tmp, out.with_name(out.name + ".failed"))
            return report
        _replace(tmp, out)
        report.out_dir = out
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _doctor_warnings(out: Path) -> list[str]:
    """What `doctor` would flag in graphport's own output: a load-time concern for old hosts, reported, not fatal."""
    from graphport.doctor import doctor_flags

    return [f"{artifact}: {flag}" for artifact in ("model.pb", "saved_model") for flag in doctor_flags(out / artifact)]


def _replace(src: Path, dst: Path) -> None:
    """Swap `src` into place with renames, so `dst` is at every moment either the old or the new whole output."""
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.rename(dst, old / "x")
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


def _metadata(graph, emitted, names: dict, source: bytes, proto: onnx.ModelProto, report: ConversionReport) -> dict:
    def io(name: str, tf_op: str, sm: dict) -> dict:
        v = graph.values.get(name)
        return {"name": name, "dtype": str(v.dtype) if v and v.dtype is not None else None,
                "shape": list(v.shape) if v and v.shape is not None else None,
                "pb": {"op": tf_op, "tensor": f"{tf_op}:0"},
                "saved_model": dict(sm)}

    return {
        "graphport_version": __version__,
        "source": {"sha256": hashlib.sha256(source).hexdigest(), "opset": graph.opset,
                   "producer": f"{proto.producer_name} {proto.producer_version}".strip()},
        "symbols": {s: {"input": i, "axis": a} for s, (i, a) in graph.symbols.items()},
        "inputs": [io(n, emitted.inputs[n], names["inputs"][n]) for n in graph.inputs],
        "outputs": [io(n, emitted.outputs[n], names["outputs"][n]) for n in graph.outputs],
        "saved_model": {"signature": "serving_default", "tags": ["serve"]},
        "onnx_op_census": report.onnx_ops,
        "op_census": report.tf_ops,
        "nodes": report.tf_nodes,
        "batch_dependencies": batch_dependencies(emitted.graph_def),
        "transposes": report.transposes,
        "verification": report.verification.to_json() if report.verification else None,
        "warnings": report.warnings,
    }
