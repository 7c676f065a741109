"""`graphport predict --engine ray --ray-address` on a cluster started the way a user starts one: `ray start`.

A head and a worker node, one CPU each, run as their own `ray start --block` processes, so the job joins an
existing cluster over its address and token, and the two one-CPU actors can only land on different raylets, with
their own object stores. The reference is independent of Ray: the local engine (itself checked against Essentia in
tests/test_predict.py) on the same model and files. Both runs are CLI subprocesses, as a user runs them.

The Ray run goes with `-W error::DeprecationWarning` and `--verbose`. The flag turns a deprecation warning that Python
attributes to graphport's own call into an error (one raised deep inside Ray is attributed to Ray's code and is not
caught that way); Ray Data reports its deprecated arguments (such as `concurrency=` in `map_batches`) as logger
warnings, which `--verbose` sends to stderr, where the test looks for them: that check is what catches them. Ray 2.60's own `DataContext()` assigns its deprecated
defaults (`use_push_based_shuffle`, `use_polars`) and warns about them whatever the caller does, so warnings from
ray.data.context are let through.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("ray")

EXAMPLE = Path(__file__).parents[1] / "graphport" / "examples" / "example_effnet.onnx"
START_TIMEOUT_S = 120
PYTHON_FLAGS = ("-W", "error::DeprecationWarning", "-W", "ignore::DeprecationWarning:ray.data.context")


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports nobody listens on now: every port a node would otherwise take at a fixed default (6379,
    8265, 10001, 52365) is given, so this cluster never collides with another one on the machine."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """One `ray start --block` node in its own session, so that teardown can signal exactly its process group."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
                                 "--disable-usage-stats", "--num-cpus=1", "--object-store-memory=200000000", *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start {' '.join(args)} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each node (`ray start --block` then stops its raylet, GCS and workers, like `ray stop`, but only
    ours: `ray stop` would stop every Ray process of the user), then SIGKILL whatever is left in their groups."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The environment of every process here: a private conversion cache; token authentication with this cluster's
    own token (what `ray start --head` turns on when ~/.ray/auth_token exists, here without reading or writing that
    file); no drain wait when a node stops."""
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "GRAPHPORT_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def ray_cluster(tmp_path, env) -> Iterator[str]:
    """A two-node cluster (head + worker, one CPU each) in a temp dir; yields its address."""
    head_port, *ports = _free_ports(6)
    address = f"127.0.0.1:{head_port}"
    procs: list[subprocess.Popen] = []
    # Not under tmp_path: Ray's socket paths (<temp>/session_<date>_<pid>/sockets/...) must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="gp-ray-", ignore_cleanup_errors=True) as temp:
        try:
            procs.append(_ray_start(["--head", f"--port={head_port}", f"--temp-dir={temp}",
                                     "--include-dashboard=false", f"--dashboard-port={ports[0]}",
                                     f"--ray-client-server-port={ports[1]}",
                                     f"--dashboard-agent-listen-port={ports[2]}"], env, tmp_path / "head.log"))
            procs.append(_ray_start([f"--address={address}", f"--temp-dir={temp}",
                                     f"--dashboard-agent-listen-port={ports[3]}", f"--metrics-export-port={ports[4]}"],
                                    env, tmp_path / "worker.log"))
            yield address
        finally:
            _stop(procs)


def _audio(folder: Path) -> None:
    """Four short files of different lengths, rates and channel counts, one in a subdirectory."""
    rng = np.random.default_rng(7)
    specs = {"a.wav": (6, 16000, 1), "b.flac": (9, 44100, 2), "c.wav": (3, 22050, 1), "sub/d.wav": (14, 16000, 1)}
    for name, (seconds, rate, channels) in specs.items():
        t = np.arange(seconds * rate) / rate
        x = 0.3 * np.sin(2 * np.pi * (110 + 40 * t) * t)[:, None] + 0.05 * rng.standard_normal((t.size, channels))
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / name, x.astype(np.float32), rate)


def _graphport(env: dict[str, str], *argv: str, python_flags: tuple[str, ...] = ()) -> subprocess.Popen:
    """`graphport predict ARGV` started in a subprocess, output captured."""
    return subprocess.Popen([sys.executable, *python_flags, "-m", "graphport", "predict", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _output(proc: subprocess.Popen) -> str:
    """The run's output; fails the test with it unless the run exits 0."""
    text = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, text
    return text


@pytest.fixture
def local_run(tmp_path, env) -> Iterator[subprocess.Popen]:
    """The reference: the local engine on the audio files, started before the cluster so that the model's one-time
    conversion (cached for the Ray run) overlaps the nodes' start-up."""
    _audio(tmp_path / "audio")
    proc = _graphport(env, str(EXAMPLE), str(tmp_path / "audio"), "--batch", "8", "-o", str(tmp_path / "local"))
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_ray_cluster_equals_local_engine(local_run, ray_cluster, env, tmp_path):
    _output(local_run)
    text = _output(_graphport(env, "--verbose", str(EXAMPLE), str(tmp_path / "audio"), "--batch", "8", "-o",
                              str(tmp_path / "ray"), "--engine", "ray", "--ray-address", ray_cluster, "--actors", "2",
                              python_flags=PYTHON_FLAGS))
    assert "deprecat" not in text.lower(), text
    assert "4 files predicted" in text, text
    local = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.npz"))
    assert len(local) == 4
    for rel in local:
        want, got = np.load(tmp_path / "local" / rel), np.load(tmp_path / "ray" / rel)
        assert sorted(got.files) == sorted(want.files), rel
        for key in want.files:
            if want[key].dtype.kind in "US":
                assert (got[key] == want[key]).all(), (rel, key)
            else:
                np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6, err_msg=f"{rel}: {key}")
