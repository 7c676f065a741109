"""`predict --threads`, its automatic split, the progress bar's rate, and a finished run that probes nothing.

TF's pools are observed from outside graphport: its parser reads the ConfigProto bytes, and the process's thread list
shows the pools TF actually started. Predictions made with parallel front-end threads are checked against Essentia
(test_predict's reference), never against another graphport run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from test_predict import ATOL, EXAMPLE, predict, setup  # noqa: F401 -- setup is the shared module fixture

from graphport.predict import Threads, auto_threads
from graphport.runtime.capi import session_config

# Runs predict in a fresh process, then lists its threads by name (TF's inter-op pool is 'tf_Compute'; its intra-op
# threads keep the process's name), so the pools counted are the ones TF started for this session alone.
THREAD_COUNT = """
import collections, os, sys
from graphport.cli import main
code = main(sys.argv[1:])
names = collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print("THREADS", code, names["tf_Compute"], sum(n for k, n in names.items() if not k.startswith("tf_")))
"""


def test_session_config_is_a_config_proto_tf_reads():
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

    rc = rewriter_config_pb2.RewriterConfig
    for intra, inter in [(1, 1), (2, 1), (300, 7)]:
        config = config_pb2.ConfigProto.FromString(session_config(intra, inter))
        assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (intra, inter)
        rewrite = config.graph_options.rewrite_options
        assert (rewrite.layout_optimizer, rewrite.memory_optimization, rewrite.meta_optimizer_iterations) == \
            (rc.OFF, rc.NO_MEM_OPT, rc.ONE)
        assert rewrite.remapping == rc.DEFAULT and rewrite.constant_folding == rc.DEFAULT  # the fusions stay


@pytest.mark.parametrize("cores,expected", [(1, Threads(1, 1)), (2, Threads(2, 1)), (16, Threads(16, 2))])
def test_auto_threads_follow_the_affinity_mask(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert auto_threads() == expected


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_threads_flag_sizes_tfs_pools(setup, tmp_path):  # noqa: F811
    root, _ = setup
    counts = {}
    for model_threads in (1, 3):
        argv = ["predict", str(EXAMPLE), str(root / "audio" / "b.wav"), "-o", str(tmp_path / f"o{model_threads}"),
                "--batch", "4", "--threads", f"{model_threads},1"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, "-c", THREAD_COUNT, *argv], capture_output=True, text=True, env=env,
                              timeout=300, check=False)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("THREADS")), proc.stdout + proc.stderr)
        code, inter_op, others = (int(v) for v in line.split()[1:])
        assert code == 0 and f"threads {model_threads},1" in proc.stdout, proc.stdout
        counts[model_threads] = inter_op, others
    assert counts[1][0] == counts[3][0] == 1  # inter-op pool: one thread
    assert counts[3][1] - counts[1][1] == 2  # intra-op pool: 3 threads instead of 1, nothing else changed


def test_threads_flag_rejects_bad_values(tmp_path):
    for bad in ("0", "2,0", "a", "1,2,3"):
        with pytest.raises(SystemExit) as e:
            predict(str(EXAMPLE), str(tmp_path), "-o", str(tmp_path / "o"), "--threads", bad)
        assert e.value.code == 2


def test_parallel_front_end_equals_essentia(setup, tmp_path, monkeypatch):  # noqa: F811
    """Two front-end threads decode different files at once; every file's rows still land in its own output."""
    from graphport.predict import local

    root, refs = setup
    real, decoders = local.decode_chunks, set()

    def recording(path, *args, **kwargs):
        decoders.add(threading.current_thread().name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(local, "decode_chunks", recording)
    out = tmp_path / "out"
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "5", "--threads", "1,2")
    assert code == 0, text
    assert len(decoders) == 2, decoders
    for name, ref in refs.items():
        assert np.abs(np.load(out / f"{name}.npz")["output_0"] - ref).max() <= ATOL, name


def test_progress_bar_and_summary_report_the_same_rate(setup, tmp_path):  # noqa: F811
    root, refs = setup
    t = time.perf_counter()
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(tmp_path / "out"), "--batch", "3")
    elapsed = time.perf_counter() - t
    assert code == 0, text
    bar = [ln for ln in text.splitlines() if "━" in ln][-1]
    summary = next(ln for ln in text.splitlines() if "files predicted" in ln)
    bar_rate = re.search(r"(\d+) patches/s", bar).group(1)
    patches, seconds, rate = re.search(r"(\d+) patches in ([\d.]+) s \((\d+) patches/s", summary).groups()
    assert bar_rate == rate, text
    assert int(patches) == sum(len(r) for r in refs.values())
    assert float(seconds) <= elapsed and int(rate) >= int(patches) / elapsed  # the run's own interval, no more


def test_finished_run_does_not_probe_the_batch_size(setup, tmp_path, monkeypatch):  # noqa: F811
    import graphport.runtime.batch_size

    root, _ = setup
    out = tmp_path / "out"
    assert predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "4")[0] == 0

    def no_probe(*args, **kwargs):
        raise AssertionError("--batch auto probed although every file was done")

    monkeypatch.setattr(graphport.runtime.batch_size, "pick_batch_size", no_probe)
    code, text = predict(str(EXAMPLE), str(root / "audio"), "-o", str(out), "--batch", "auto")
    assert code == 0 and "2 of 2 files already done" in text and "--batch auto" not in text, text
