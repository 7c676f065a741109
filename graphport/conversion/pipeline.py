"""`convert`: ONNX file -> IR -> passes -> flat TF graph -> verified artifacts, written atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from graphport.conversion.dim_sizes import DimPlan, plan_sizes
from graphport.conversion.verify import (
    DEFAULT_BATCH_SIZES,
    ONEDNN_SETTINGS,
    VerifyResult,
    input_specs,
    start_reference,
    verification_cases,
    verify,
)
from graphport.core import essentia_metadata, model_json
from graphport.core.atomic import output_lock, replace_dir, staging_dir
from graphport.core.errors import GraphportError, OutputExists, require_extra
from graphport.ir.from_onnx import load_model, to_ir
from graphport.passes import fix_dims, fix_inputs, optimize
from graphport.runtime.isolated import worker
from graphport.runtime.reference import reference_session
from graphport.runtime.tf_python import import_tensorflow


@dataclass
class ConversionReport:
    out_dir: Path | None
    seconds: float
    onnx_ops: dict[str, int]
    tf_ops: dict[str, int]
    verification: VerifyResult | None
    metadata: dict = field(default_factory=dict)
    essentia: dict = field(default_factory=dict)  # the Essentia metadata JSON written beside model.json
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
            fix_inputs: dict[str, np.ndarray] | None = None, fix_dims: dict[str, int] | None = None,
            verify_dims: dict[str, tuple[int, ...]] | None = None,
            packaging: essentia_metadata.Packaging | None = None, tflite: bool = False) -> ConversionReport:
    """Convert `model` into `out_dir` (model.pb, saved_model/, model.json, model.essentia.json).

    If verification fails, `out_dir` is left as it was (with `keep_failed`, the artifacts go to OUTDIR.failed/).
    `fix_inputs` specialises the named inputs to constants (e.g. a sample rate that selects an `If` branch);
    `fix_dims` pins named symbolic dims to sizes (`{"sequence": 512}`), every other dim stays dynamic.
    `verify_dims` chooses the sizes (one or two each) at which free symbolic dims are verified, instead of probing.
    `packaging` fills Essentia's metadata JSON (name, classes, sample rate, algorithm, output purposes, and a path
    to write a second copy to). `tflite` also writes model.tflite (graphport/conversion/tflite.py), verified in
    LiteRT's interpreter on the same cases.
    """
    start = time.perf_counter()
    out = Path(out_dir).absolute()
    if any(b < 1 for b in batch_sizes):
        raise GraphportError(f"batch sizes must be >= 1, got {list(batch_sizes)}.")
    with output_lock(out):
        if out.exists() and not force:
            raise OutputExists(f"output directory '{out}' already exists; pass force=True to replace it.")
        pins = Pins(fix_inputs or {}, fix_dims or {}, verify_dims or {})
        if tflite:
            require_extra("tflite", "graphport convert --tflite")
        packaging = packaging or essentia_metadata.Packaging()
        if packaging.name is None:  # Essentia names a model after its file
            stem = Path(model).stem if not isinstance(model, onnx.ModelProto) else (model.graph.name or "model")
            packaging = dataclasses.replace(packaging, name=stem)
        report = _convert(model, out, start, batch_sizes, verify_outputs, keep_failed, atol, rtol, pins, packaging,
                          tflite)
        if report.out_dir is not None and packaging.path is not None:
            essentia_metadata.write(packaging.path, report.essentia)
        return report


@dataclass
class Pins:
    """What the user fixed (--fix-input, --fix-dim) and the sizes they chose for verification (--verify-dim)."""

    inputs: dict[str, np.ndarray]
    dims: dict[str, int]
    verify_dims: dict[str, tuple[int, ...]]


def _convert(model, out: Path, start: float, batch_sizes: tuple[int, ...], verify_outputs: bool, keep_failed: bool,
             atol: float, rtol: float, pins: Pins, packaging: essentia_metadata.Packaging,
             tflite: bool) -> ConversionReport:
    proto, onnx_bytes = load_model(model, second_opinion=reference_session)
    source = Path(model).read_bytes() if not isinstance(model, onnx.ModelProto) else onnx_bytes
    if pins.inputs or pins.dims:  # ORT must verify against the same specialised model
        proto = fix_dims(fix_inputs(proto, pins.inputs), pins.dims)
        onnx_bytes = proto.SerializeToString()
    graph = to_ir(proto)
    described = _output_descriptions(proto, graph)
    purposes = essentia_metadata.output_purposes(described, packaging)  # a bad --output-purpose fails now
    if verify_outputs:  # a valid model: TF's import in the workers overlaps with everything below
        for setting in ONEDNN_SETTINGS:
            worker(setting)
    onnx_ops = graph.census()
    graph = optimize(graph)
    dims, cases, reference = DimPlan(), None, None
    if verify_outputs:  # sized from the folded graph, whose shapes are expressions over the input dims
        dims = plan_sizes(onnx_bytes, graph, input_specs(graph), pins.verify_dims)
        cases = verification_cases(graph, batch_sizes, dims=dims)
        reference = start_reference(onnx_bytes, graph, cases)  # ORT runs while TF is imported and the graph emitted
    # TensorFlow is imported only now, after the model is read and validated: a bad file is refused at once.
    import_tensorflow()
    from graphport.conversion.artifacts import write_pb, write_saved_model
    from graphport.emit.tf import build_graph_def

    emitted = build_graph_def(graph)
    tf_ops = dict(Counter(n.op for n in emitted.graph_def.node).most_common())
    with staging_dir(out) as tmp:
        write_pb(emitted, tmp / "model.pb")
        # Saving is Python-bound tracing, verification is kernel-bound: overlapping them saves about a second.
        with ThreadPoolExecutor(1) as pool:
            saving = pool.submit(write_saved_model, emitted, graph, tmp / "saved_model")
            result = verify(onnx_bytes, graph, emitted.graph_def, (emitted.inputs, emitted.outputs), batch_sizes,
                            atol, rtol, dims=dims, cases=cases, reference=reference) if verify_outputs else None
            names = saving.result()
        unsupported = _write_tflite(tmp, result, cases, reference, graph, atol, rtol) if tflite else None
        report = ConversionReport(None, 0.0, onnx_ops, tf_ops, result,
                                  warnings=graph.notes + _doctor_warnings(tmp) + _tflite_warnings(unsupported))
        report.seconds = time.perf_counter() - start
        report.metadata = _write_metadata(tmp, graph, emitted, names, source, proto, report, pins, dims, unsupported)
        ops = {name: op for name, op, _ in described}
        report.essentia = _write_essentia(tmp, report.metadata, ops, packaging, purposes)
        if not report.ok:
            if keep_failed:
                replace_dir(tmp, out.with_name(out.name + ".failed"))
            return report
        replace_dir(tmp, out)
        report.out_dir = out
        return report


def _output_descriptions(proto: onnx.ModelProto, graph) -> list[tuple[str, str | None, list | None]]:
    """(name, ONNX op that computes it, IR shape) per output: what Essentia's `op` and `output_purpose` come from."""
    producer = {o: n.op_type for n in proto.graph.node for o in n.output}
    return [(n, producer.get(n, "Identity"), list(graph.values[n].shape) if graph.values[n].shape is not None else None)
            for n in graph.outputs]


def _write_essentia(folder: Path, meta: dict, ops: dict[str, str], packaging: essentia_metadata.Packaging,
                    purposes: dict[str, str]) -> dict:
    """Essentia's metadata JSON for the frozen graph: its names are model.pb's ops, as Essentia's are its .pb's;
    `ops` is the ONNX op computing each output."""
    import tensorflow as tf

    inputs = [essentia_metadata.tensor_entry(e["pb"]["op"], e["dtype"], e["shape"]) for e in meta["inputs"]]
    outputs = [essentia_metadata.tensor_entry(e["pb"]["op"], e["dtype"], e["shape"], ops[e["name"]],
                                              purposes[e["name"]]) for e in meta["outputs"]]
    verification = meta.get("verification")
    types = ["frozen_model", "SavedModel", *(["tflite"] if (folder / "model.tflite").exists() else [])]
    doc = essentia_metadata.build(packaging, inputs, outputs, tf.__version__, types, {
        "version": meta["graphport_version"], "model_json": model_json.FILENAME,
        "onnx_names": {"inputs": [e["name"] for e in meta["inputs"]], "outputs": [e["name"] for e in meta["outputs"]]},
        "verified_against": "onnxruntime" if verification else None,
        "verified_ok": verification["ok"] if verification else None})
    essentia_metadata.write(folder / essentia_metadata.FILENAME, doc)
    return doc


def _doctor_warnings(out: Path) -> list[str]:
    """What `doctor` would flag in graphport's own output: a load-time concern for old hosts, reported, not fatal."""
    from graphport.doctor import doctor_flags

    return [f"{artifact}: {flag}" for artifact in ("model.pb", "saved_model") for flag in doctor_flags(out / artifact)]


def _write_tflite(folder: Path, result: VerifyResult | None, cases, reference, graph, atol: float,
                  rtol: float) -> list:
    """model.tflite beside the SavedModel it is made from, its LiteRT outputs added to the verification table;
    returns the nodes TFLite cannot run ([] when written)."""
    from graphport.conversion.tflite import check_tflite, write_tflite

    unsupported = write_tflite(folder / "saved_model", folder / "model.tflite")
    if not unsupported and result is not None:
        refs = reference.result()[0]
        result.checks += check_tflite(folder / "model.tflite", cases.feeds, refs, graph.outputs, cases.variants,
                                      atol, rtol, result.noise_floor)
    return unsupported


def _tflite_warnings(unsupported: list | None) -> list[str]:
    if not unsupported:
        return []
    nodes = "; ".join(f"{op} (node '{node}'): {why}" for op, node, why in unsupported)
    said = f"model.tflite not written: {len(unsupported)} node(s) outside TFLite's builtin ops: {nodes}."
    return [f"{said} The .pb and the SavedModel are written."]


def _write_metadata(folder: Path, graph, emitted, names: dict, source: bytes, proto: onnx.ModelProto,
                    report: ConversionReport, pins: Pins, dims: DimPlan, unsupported: list | None) -> dict:
    from graphport.emit.tf.batchdeps import batch_dependencies

    def io(name: str, tf_op: str, sm: dict) -> dict:
        v = graph.values.get(name)
        return model_json.endpoint(name, str(v.dtype) if v and v.dtype is not None else None,
                                   list(v.shape) if v and v.shape is not None else None, tf_op, sm)

    extra = {
        "source": {"sha256": hashlib.sha256(source).hexdigest(), "opset": graph.opset,
                   "producer": f"{proto.producer_name} {proto.producer_version}".strip()},
        "symbols": {s: {"input": i, "axis": a} for s, (i, a) in graph.symbols.items()},
        "fixed": {"inputs": {k: np.asarray(v).tolist() for k, v in pins.inputs.items()}, "dims": pins.dims},
        "verified_dim_sizes": dims.sizes,
        "verified_dim_reasons": dims.reasons,
        "batch_like_dims": dims.batch_like,
        "saved_model": {"signature": "serving_default", "tags": ["serve"]},
        "onnx_op_census": report.onnx_ops,
        "op_census": report.tf_ops,
        "nodes": report.tf_nodes,
        "batch_dependencies": batch_dependencies(emitted.graph_def),
        "transposes": report.transposes,
        "verification": report.verification.to_json() if report.verification else None,
        "warnings": report.warnings,
        "tflite": None if unsupported is None else {
            "written": not unsupported, "unsupported": [{"op": o, "node": n, "reason": r} for o, n, r in unsupported]},
        "conversion_seconds": round(report.seconds, 3),
    }
    inputs = [io(n, emitted.inputs[n], names["inputs"][n]) for n in graph.inputs]
    outputs = [io(n, emitted.outputs[n], names["outputs"][n]) for n in graph.outputs]
    model_json.write(folder, "graphport convert", inputs, outputs, **extra)
    return model_json.read(folder)
