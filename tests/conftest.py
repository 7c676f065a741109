"""Shared fixtures. Long runs (the full-size seed model) are opt-in with --run-slow."""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run the long, opt-in tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="opt-in long run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
