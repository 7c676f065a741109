"""One check shared by the op-family tests: a converted model's TF session equals ONNX Runtime on given feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from graphport.runtime import load


def assert_session_equals_ort(onnx_path: Path, out_dir: Path, feeds: list[dict], atol: float) -> None:
    """Run `out_dir` (a graphport output) in a TF session and ORT on `onnx_path`, on each feed: same dtypes, same
    shapes (data-dependent lengths included), values within `atol` + 1e-5 relative."""
    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in ref.get_outputs()]
    session = load(out_dir, backend="session")
    try:
        for feed in feeds:
            want, got = dict(zip(names, ref.run(None, feed))), session.run(feed)
            for name in names:
                assert got[name].dtype == want[name].dtype, name
                assert got[name].shape == want[name].shape, (name, got[name].shape, want[name].shape)
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=atol, err_msg=name)
    finally:
        session.close()
