"""The README's Python API examples run as written (from a folder laid out like the repository root)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTION = ROOT.joinpath("README.md").read_text().split("### Python API")[1].split("### Outputs")[0]
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, re.DOTALL)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("readme")
    for name in ("graphport", "tests"):
        (d / name).symlink_to(ROOT / name)
    return d


def test_the_api_section_has_the_four_examples():
    assert len(BLOCKS) == 4 and "graphport.convert" in BLOCKS[0] and "from_torch(" in BLOCKS[1]
    assert "load(" in BLOCKS[2] and "fix(" in BLOCKS[3]


@pytest.mark.parametrize("index", range(4))
def test_readme_example_runs(root, index):
    if index == 1:  # runs the folder the first example writes
        subprocess.run([sys.executable, "-c", BLOCKS[0]], cwd=root, check=True, capture_output=True, timeout=600)
    proc = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=root, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
