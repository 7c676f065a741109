"""Keep TensorFlow's, absl's and oneDNN's log lines off stderr while a command runs (`--verbose` lets them through).

Why a filter on file descriptor 2 and not an environment variable: TF_CPP_MIN_LOG_LEVEL only governs TF's own
logging. The lines users see come from absl's logging before `absl::InitializeLog()` (which Python TF never calls),
written straight to fd 2 whatever TF_CPP_MIN_LOG_LEVEL says: `WARNING: All log messages before absl::InitializeLog()
...`, then `I0000 ... port.cc] oneDNN custom operations are on` once for each TF library loaded (by `import
tensorflow`, and again by the C API's ctypes load of libtensorflow_cc), `cpu_feature_guard` banners, and `E0000`
lines while a model runs (and Ray's C++ core-worker lines, same idea). Child processes that inherit stderr print them too. So fd 2 is pointed at a pipe for the
length of the command, and a small filter process copies every other line to the real stderr. A process, not a
thread: if TF kills this one (SIGSEGV, abort), the filter still delivers what was written before the crash.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

# Runs as `python -I -S -c`: stdlib only, no site-packages, started in ~20 ms.
_FILTER = r"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(rb"(WARNING: All log messages before absl::InitializeLog\(\)"
                   rb"|[IWE]\d{4} [\d:.]+ +\d+ [^\]\s]+\] "
                   rb"|To enable the following instructions: .* rebuild TensorFlow"
                   rb"|(INFO|WARNING|ERROR):(absl|tensorflow):"
                   rb"|\[\d{4}-\d\d-\d\d [\d:,]+ [IWE] \d+ \d+\] \S+:\d+: )")
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not noise.match(line):
        out.write(line)
        out.flush()
"""


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """Filter TF/absl/oneDNN log lines out of fd 2 inside the block; a no-op if disabled or fd 2 is unusable."""
    if not enabled:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    read_end, write_end = os.pipe()
    try:  # its own session: Ctrl-C stops the command, which then still gets its last words through
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER], stdin=read_end, stdout=saved,
                                stderr=saved, start_new_session=True)
    except OSError:
        for fd in (read_end, write_end, saved):
            os.close(fd)
        yield
        return
    os.close(read_end)
    _flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        _flush()
        os.dup2(saved, 2)  # closes our write end: the filter sees EOF once no child holds the pipe either
        os.close(saved)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _flush() -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()
