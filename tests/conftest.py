"""Shared fixtures. Long runs are opt-in: the full-size seed model with --run-slow, the whole zoo with --run-zoo.

TF_ENABLE_ONEDNN_OPTS is left as the environment has it (unset, =1 or =0 must all pass): conversion verifies both
settings in worker processes whatever it is, and tests that load TF in this process run the host's setting.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRAPHPORT_LINT", "1")  # Graph.lint() after every pass, in this process and its children

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run the long, opt-in tests")
    parser.addoption("--run-zoo", action="store_true", help="run the whole architecture zoo (writes docs/zoo.md)")
    parser.addoption("--run-hosts", action="store_true",
                     help="run the other TF hosts (TF 2.17's C API in a venv of its own, ~1.3 GB; .ci/run does)")
    parser.addoption("--run-long-fuzz", action="store_true",
                     help="run the long property tests over dynamic dims (tests/test_dynamic_properties.py)")


def pytest_collection_modifyitems(config, items):
    for marker, option in (("slow", "--run-slow"), ("zoo", "--run-zoo"), ("long_fuzz", "--run-long-fuzz"),
                           ("hosts", "--run-hosts")):
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=f"opt-in long run: pass {option}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


# Hypothesis profiles for tests/test_fuzz.py: `ci` is the default (fixed seed, >= 2,000 cases in all);
# `--hypothesis-profile nightly` draws 10x more fresh cases; `dev` is a quick smoke run.
from hypothesis import HealthCheck, settings

_slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=700, deadline=None, derandomize=True, suppress_health_check=_slow_ok,
                          print_blob=True)
settings.register_profile("nightly", max_examples=7000, deadline=None, suppress_health_check=_slow_ok,
                          print_blob=True)
settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=_slow_ok)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def break_emitter(request):
    """Replace the TF emitter of an ONNX op type with a deliberately wrong one, to show that a check catches it
    (through the registry's public hook; the old emitters come back after the test)."""
    from graphport.emit.tf.registry import EMITTERS

    def apply(op_type: str, handler) -> None:
        request.addfinalizer(EMITTERS.override(op_type, handler))

    return apply
