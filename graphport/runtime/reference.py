"""ONNX Runtime as the reference that conversions are verified against.

Its own error log stays off stderr: a run it refuses raises, and the caller words that for the user (verification
inputs it cannot run, dim sizes probed and rejected). A model it refuses to load is the model's fault (exit 2), or
one it has no kernel for, which can only be converted unverified: either way a user error, never "a graphport bug".
"""

from __future__ import annotations

import re

import onnxruntime as ort

from graphport.core.errors import InvalidModel


def reference_session(model: bytes, optimised: bool = True) -> ort.InferenceSession:
    """A CPU session on `model`; `optimised=False` turns ORT's graph fusions off (a second float order)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    # No spinning between ops: the reference runs beside TF's import and TF's verification workers on few cores, and
    # ORT's spinning threads took CPU from them (the seed B0's conversion went 3.3-3.9 s -> 3.2 s).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises Fail/InvalidGraph/NotImplemented/..., one pybind class each
        said = (str(e).strip().splitlines() or [type(e).__name__])[0]
        said = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", said)
        if type(e).__name__ == "NotImplemented":
            raise InvalidModel(f"ONNX Runtime cannot run this model, so the conversion cannot be verified: {said}. "
                               "Convert with --no-verify to skip the comparison.") from e
        raise InvalidModel(f"the model is invalid: ONNX Runtime says {said}") from e
