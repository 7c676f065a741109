"""Every shrunk model the differential fuzzer (tests/test_fuzz.py) ever failed on, re-checked against ORT."""

from pathlib import Path

import onnx
import pytest
from test_fuzz import differential_check

CASES = sorted((Path(__file__).parent / "regressions").glob("*.onnx"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_regression(path):
    assert differential_check(onnx.load(path)) in ("match", "unsupported")
