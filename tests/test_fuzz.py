"""Differential fuzzing: random small ONNX graphs, ONNX Runtime vs graphport's TF graph at two batch sizes.

The property: graphport's outputs equal ORT's within tolerance with oneDNN off and on, or graphport refuses with
`UnsupportedModel` naming the node and the reason. Anything else (a mismatch, a TF crash, another exception) is a
bug. Conversion runs in process through the IR and the emitter (no SavedModel); TF runs the graph in one worker
process per oneDNN setting (graphport.runtime.isolated), so a kernel crash fails the case instead of the test run. Case counts come from the Hypothesis
profile (tests/conftest.py): `ci` (default, 3 x 700 cases, fixed seed) or `--hypothesis-profile nightly`.
A failing case is written to $GRAPHPORT_FUZZ_FAILURES (default .hypothesis/failures/) as the shrunk .onnx file.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fuzz.strategies import FAMILIES, onnx_models
from hypothesis import event, given, reject
from hypothesis import strategies as st

from graphport.conversion.verify import ONEDNN_SETTINGS, compare
from graphport.core.errors import UnsupportedModel
from graphport.emit.tf import build_graph_def
from graphport.ir.from_onnx import load_model, to_ir
from graphport.passes import optimize
from graphport.runtime.isolated import IsolatedGraph, onednn_label

BATCHES = (1, 3)
ATOL, RTOL = 1e-4, 1e-3
FAILURES = Path(os.environ.get("GRAPHPORT_FUZZ_FAILURES", ".hypothesis/failures"))


def differential_check(model: onnx.ModelProto) -> str:
    """Run `model` in ORT and through graphport under both oneDNN settings; return 'match' or 'unsupported', raise
    AssertionError (or KernelCrash, for a TF crash in the worker) otherwise."""
    onnx.checker.check_model(model, full_check=True)
    refs = _ort_outputs(model)
    try:
        proto, _ = load_model(model)
        graph = optimize(to_ir(proto))
        emitted = build_graph_def(graph)
    except UnsupportedModel as e:
        assert e.items and all(op and name and why for op, name, _, why in e.items), str(e)
        return "unsupported"
    with ThreadPoolExecutor(len(ONEDNN_SETTINGS)) as pool:
        list(pool.map(lambda onednn: _check_setting(emitted, refs, onednn), ONEDNN_SETTINGS))
    return "match"


def _check_setting(emitted, refs: dict[int, tuple[dict, dict]], onednn: bool) -> None:
    runner = IsolatedGraph(emitted.graph_def, emitted.inputs, emitted.outputs, onednn=onednn)
    try:
        for batch, (feeds, ref) in refs.items():
            got = runner.run(feeds)
            for name, want in ref.items():
                max_abs, _, ok = compare(want, got[name], ATOL, RTOL)
                assert ok, (f"output '{name}' at batch {batch}, oneDNN {onednn_label(onednn)}: ORT {want.dtype}"
                            f"{list(want.shape)} vs graphport {got[name].dtype}{list(got[name].shape)}, "
                            f"max abs diff {max_abs:.3g}")
    finally:
        if runner.worker.alive:
            runner.close()


def _ort_outputs(model: onnx.ModelProto) -> dict[int, tuple[dict, dict]]:
    """Feeds and ORT's outputs per batch size. A model ORT itself cannot run says nothing about graphport."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        refs = {}
        for batch in BATCHES:
            feeds = _feeds(sess, batch)
            refs[batch] = feeds, dict(zip(names, sess.run(None, feeds)))
    except ort.capi.onnxruntime_pybind11_state.Fail as e:
        event(f"ORT refuses: {str(e).split(':')[-1].strip()[:60]}")
        reject()
    return refs


def _feeds(sess: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    return {i.name: rng.standard_normal([batch if d == "N" else d for d in i.shape]).astype(np.float32)
            for i in sess.get_inputs()}


def _check_and_keep(model: onnx.ModelProto) -> None:
    """Keep every failing model on disk: the last one Hypothesis reports is the shrunk, minimal one."""
    try:
        event(differential_check(model))
    except Exception:
        data = model.SerializeToString()
        FAILURES.mkdir(parents=True, exist_ok=True)
        (FAILURES / f"{hashlib.sha256(data).hexdigest()[:12]}.onnx").write_bytes(data)
        raise


@pytest.mark.parametrize("family", sorted(FAMILIES))
@given(data=st.data())
def test_graphport_matches_ort(family, data):
    _check_and_keep(data.draw(onnx_models(family), label="model"))
