"""The README and docs say what is true: the README stays short with its two commands up front, its links lead
to files that exist, and the op walked through in docs/adding-an-op.md is the code that runs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_short_with_both_commands_in_its_first_60_lines():
    lines = README.splitlines()
    head = "\n".join(lines[:60])
    assert len(lines) <= 150
    assert "pip install -e . && graphport example" in head
    assert "pip install -e '.[test]' && python3.11 -m pytest -q" in head


def test_every_link_in_the_readme_and_docs_leads_to_a_file():
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith("http") and not (doc.parent / target).exists():
                broken.append(f"{doc.name}: {target}")
    assert not broken


def test_the_op_walked_through_is_the_code_that_runs():
    from graphport.emit.tf import elementwise
    from graphport.emit.tf.registry import lookup

    text = (ROOT / "docs" / "adding-an-op.md").read_text()
    quoted = next(b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "def is_inf" in b)
    assert quoted == inspect.getsource(elementwise.is_inf)  # the decorator included
    assert lookup("IsInf", 10) is elementwise.is_inf and lookup("IsInf", 20) is elementwise.is_inf
