"""No data loss: SIGKILL `graphport convert` at several moments; the output is whole or absent, never partial,
and an earlier output under the same name survives intact (convert builds in .NAME.tmp-* and renames)."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphport.conversion.bundled_example import EXAMPLE

WHOLE = {"model.pb", "model.json", "model.essentia.json", "saved_model"}


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("delay", [1.0, 4.0, 7.0, 10.0])
@pytest.mark.parametrize("earlier", [False, True])
def test_sigkill_leaves_whole_or_nothing(tmp_path, delay, earlier):
    out = tmp_path / "out"
    if earlier:
        out.mkdir()
        (out / "model.pb").write_bytes(b"an earlier conversion")
        before = _digest(out)
    proc = subprocess.Popen([sys.executable, "-m", "graphport", "convert", str(EXAMPLE), "-o", str(out),
                             "--force", "--batch-sizes", "1,3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if out.exists():
        names = {p.name for p in out.iterdir()}
        assert names == WHOLE or (earlier and _digest(out) == before), names
    else:
        assert not earlier, "the earlier output vanished"
    stray = [p.name for p in tmp_path.iterdir() if p.name != "out" and not p.name.startswith((".out.tmp-",
                                                                                             ".out.old-"))]
    assert not stray, stray
