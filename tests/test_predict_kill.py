"""`predict` killed with SIGKILL mid-run, then resumed: no duplicated and no missing rows in the Parquet table."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from graphport.conversion.bundled_example import EXAMPLE


def _run(args, env, kill_at_part=None):
    """Run predict; with `kill_at_part`, SIGKILL it as soon as that many per-file parts are on disk (mid-run)."""
    cmd = [sys.executable, "-m", "graphport", "predict", str(EXAMPLE), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if kill_at_part is None:
        return proc.wait(timeout=600)
    parts = Path(args[args.index("-o") + 1]) / "parts"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if parts.is_dir() and len(list(parts.glob("*.parquet"))) >= kill_at_part:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return None


def test_sigkill_then_resume_gives_every_row_once(tmp_path):
    env = dict(os.environ, GRAPHPORT_CACHE_DIR=str(tmp_path / "cache"))
    audio = tmp_path / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        sf.write(audio / f"f{i}.wav", (0.2 * rng.standard_normal((8 + 3 * i) * 16000)).astype(np.float32), 16000)
    files = sorted(str(p) for p in audio.iterdir())
    assert _run([*files, "-o", str(tmp_path / "clean"), "--format", "parquet", "--batch", "2"], env) == 0
    clean = pq.read_table(tmp_path / "clean" / "predictions.parquet").to_pandas()
    partial = 0
    for at in (1, 3):
        out = tmp_path / f"killed-{at}"
        _run([*files, "-o", str(out), "--format", "parquet", "--batch", "2"], env, kill_at_part=at)
        left = [p.name for p in out.rglob("*") if p.is_file()] if out.exists() else []
        partial += bool(left) and not (out / "predictions.parquet").exists()
        assert _run([*files, "-o", str(out), "--format", "parquet", "--batch", "2"], env) == 0
        got = pq.read_table(out / "predictions.parquet").to_pandas()
        assert not got.duplicated(["path", "patch_index"]).any()
        assert sorted(zip(got.path, got.patch_index)) == sorted(zip(clean.path, clean.patch_index))
        merged = got.merge(clean, on=["path", "patch_index"], suffixes=("", "_clean"))
        assert np.allclose(np.stack(merged.output_0), np.stack(merged.output_0_clean), atol=1e-6)
    assert partial == 2, "each kill must land mid-run (parts written, table not merged yet)"
