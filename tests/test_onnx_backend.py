"""ONNX's own backend conformance suite, run against graphport's converted TF graphs.

Only node tests of ops that graphport registers a handler for are included (a test for an unclaimed op would only
measure the op list), plus the pytorch-converted and pytorch-operator model tests, which exercise older opsets
(6-9) the way real exported models use them. `real` models need downloads and `simple` ones test sequences and
strings, so both are left out. Every known failure is listed in EXPECTED_FAILURES with its reason; a test that
starts passing shows up as an unexpected success, so the list cannot silently go stale.
"""

from __future__ import annotations

import re

import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

from graphport.backend import GraphportBackend
from graphport.emit.tf.registry import supported_ops

# Test-name spellings that neither the snake_case nor the run-together lower-case op name produce.
_NAME_ALIASES = {
    "BatchNormalization": ["batchnorm"], "InstanceNormalization": ["instancenorm"],
    "GreaterOrEqual": ["greater_equal"], "LessOrEqual": ["less_equal"],
}

# {test-name regex: why it fails}. Patterns are searched in the generated names (which end in `_cpu`).
EXPECTED_FAILURES: dict[str, str] = {}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def op_name_forms(op_type: str) -> set[str]:
    """The spellings ONNX's node test names use for an op (ReduceMean -> reduce_mean, ArgMax -> argmax)."""
    return {_snake(op_type), op_type.lower(), *_NAME_ALIASES.get(op_type, [])}


def claimed_pattern() -> str:
    """One regex matching the node tests of every op in graphport's registry."""
    forms = sorted({f for op in supported_ops() for f in op_name_forms(op)}, key=len, reverse=True)
    return rf"^test_({'|'.join(map(re.escape, forms))})(_.*)?_cpu$"


def model_test_pattern() -> str:
    """The pytorch-converted and pytorch-operator model tests (older opsets, as exported by torch)."""
    names = [t.name for kind in ("pytorch-converted", "pytorch-operator") for t in load_model_tests(kind=kind)]
    return rf"^({'|'.join(map(re.escape, sorted(names)))})_cpu$"


def excluded_model_pattern() -> str:
    """`real` (downloads) and `simple` (sequence/string models) tests, whose names can look like node tests."""
    names = [t.name for kind in ("real", "simple") for t in load_model_tests(kind=kind)]
    return rf"^({'|'.join(map(re.escape, sorted(names)))})_cpu$"


def node_test_names() -> list[str]:
    return [t.name for t in load_model_tests(kind="node")]


backend_test = onnx.backend.test.BackendTest(GraphportBackend, __name__)
backend_test.include(claimed_pattern())
backend_test.include(model_test_pattern())
backend_test.exclude(excluded_model_pattern())
for _pattern in EXPECTED_FAILURES:
    backend_test.xfail(_pattern)

globals().update(backend_test.enable_report().test_cases)
