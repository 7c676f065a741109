"""Run ONNX's backend conformance suite against graphport and print (or write) the counts.

The counts go into docs/conformance.md so the README can state a measured number, not a claim:
passed, failed, expected failure (listed with reasons in tests/test_onnx_backend.py), and node tests that
were not run because graphport registers no handler for their op.

    python scripts/conformance_counts.py            # print the table
    python scripts/conformance_counts.py --write    # and write docs/conformance.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "tests" / "test_onnx_backend.py"
DOC = ROOT / "docs" / "conformance.md"
CATEGORIES = {"OnnxBackendNodeModelTest": "node", "OnnxBackendPyTorchConvertedModelTest": "pytorch-converted",
              "OnnxBackendPyTorchOperatorModelTest": "pytorch-operator"}
COLUMNS = ("passed", "failed", "expected failure", "not claimed")


class _Collector:
    """pytest plugin: one outcome per test id (setup skips are tests the module did not include)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" and report.skipped:
            self.outcomes[report.nodeid] = "not included"
        elif report.when == "call":
            if hasattr(report, "wasxfail"):
                self.outcomes[report.nodeid] = "expected failure" if report.skipped else "failed"  # xpass fails
            else:
                self.outcomes[report.nodeid] = report.outcome if report.outcome != "skipped" else "not included"
        elif report.when in ("setup", "teardown") and report.failed:
            self.outcomes[report.nodeid] = "failed"


def count(extra_args: list[str]) -> dict[str, Counter]:
    """Run the module and tally outcomes per category; 'not claimed' comes from the module's own op attribution."""
    sys.path.insert(0, str(MODULE.parent))
    import test_onnx_backend  # its selection logic is the single source of truth

    collector = _Collector()
    rc = pytest.main([str(MODULE), "-q", "-p", "no:cacheprovider", "-W", "ignore", *extra_args], plugins=[collector])
    if rc not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise SystemExit(f"pytest did not run the suite (exit code {rc})")
    tallies: dict[str, Counter] = {c: Counter() for c in CATEGORIES.values()}
    for nodeid, outcome in collector.outcomes.items():
        category = CATEGORIES.get(nodeid.split("::")[1])
        if category is not None and outcome != "not included":
            tallies[category][outcome] += 1
    tallies["node"]["not claimed"] = len(test_onnx_backend.claimed_node_tests()[1])
    return tallies


def table(tallies: dict[str, Counter]) -> str:
    rows = ["| tests | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    total: Counter = Counter()
    for category, tally in tallies.items():
        rows.append(f"| {category} | " + " | ".join(str(tally[c]) for c in COLUMNS) + " |")
        total.update(tally)
    rows.append("| **total** | " + " | ".join(f"**{total[c]}**" for c in COLUMNS) + " |")
    return "\n".join(rows)


def write_doc(tallies: dict[str, Counter], seconds: float) -> None:
    import onnx
    import tensorflow as tf

    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(f"""# ONNX backend conformance

graphport runs ONNX's own backend test suite (`onnx.backend.test`, onnx {onnx.__version__}, TF {tf.__version__})
through `graphport.conversion.onnx_backend`: every test converts its model to a flat TF graph and compares the TF session's
outputs with ONNX's expected outputs. Node tests are run for the ops graphport registers a converter for; the
pytorch-converted and pytorch-operator model tests are run in full. `real` (downloaded) and `simple` models are
not run.

{table(tallies)}

- **expected failure**: listed, each with its reason, in `EXPECTED_FAILURES` in `tests/test_onnx_backend.py`.
  A test that starts passing is reported as a failure, so that list stays exact.
- **not claimed**: node tests of ops graphport has no converter for (it refuses such models with a clear error).

Regenerate with `python scripts/conformance_counts.py --write` (took {seconds:.0f} s here).
""")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC.relative_to(ROOT)}")
    args, extra = parser.parse_known_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.time()
    tallies = count(extra)
    print(table(tallies))
    if args.write:
        write_doc(tallies, time.time() - start)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
