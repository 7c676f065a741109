"""ONNX Runtime as the reference that conversions are verified against.

Its own error log stays off stderr: a run it refuses raises, and the caller words that for the user (verification
inputs it cannot run, dim sizes probed and rejected).
"""

from __future__ import annotations

import onnxruntime as ort


def reference_session(model: bytes, optimised: bool = True) -> ort.InferenceSession:
    """A CPU session on `model`; `optimised=False` turns ORT's graph fusions off (a second float order)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
