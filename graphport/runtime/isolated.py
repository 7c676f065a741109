"""Run GraphDefs in TF 2.21 inside a child process, so that a kernel that crashes cannot kill the caller.

TF's oneDNN kernels abort or segfault on some valid graphs (see docs/onednn.md), and whether oneDNN is on is
decided once per process, when TF loads. So verification and the differential tests run each graph in a worker
process per oneDNN setting: a crash becomes a `KernelCrash` naming the signal and the setting, and the next call
starts a fresh worker. A worker runs graphs through TF's C API (graphport.runtime.capi), as C/C++ hosts do: loading
libtensorflow takes under a second where `import tensorflow` takes several. Workers are kept between calls and
leave with their parent.

Protocol: length-prefixed pickles over the child's stdin/stdout. Both ends are this module, in one installation.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import weakref

import numpy as np

from graphport.core.errors import RunFailed

_HEADER = struct.Struct("<Q")
# stderr lines that say nothing about a crash: TF's info logs and banners, absl's stack-trace frames
_NOISE = ("@ ", "*** ", "PC: ", "I0000", "W0000", "WARNING: All log messages", "To enable the following")
_LOG_PREFIX = re.compile(r"^[FE]\d{4} [\d:.]+\s+\d+ \S+\] ")


class KernelCrash(RunFailed):
    """TF's worker process died (a signal, an abort) while loading or running a graph."""

    def __init__(self, onednn: bool | None, signal_name: str, detail: str):
        self.onednn, self.signal_name, self.detail = onednn, signal_name, detail
        where = "" if onednn is None else f" with oneDNN {'on' if onednn else 'off'}"
        super().__init__(f"TensorFlow 2.21 crashed ({signal_name}){where}" + (f": {detail}" if detail else ""))


class GraphRunError(RunFailed):
    """TF refused to load or run the graph (an InvalidArgumentError, say): the process survived."""


def onednn_label(onednn: bool | None) -> str:
    return "host default" if onednn is None else ("on" if onednn else "off")


class GraphRunner:
    """Run a serialized GraphDef through the TF C API in this process, feeding and fetching by op name. Inputs or
    outputs of a dtype the C API binding does not map (bfloat16, float8, strings) go through tf.compat.v1 instead,
    imported only then."""

    def __init__(self, graph_def: bytes, inputs: dict[str, str], outputs: dict[str, str], config: bytes | None = None):
        from graphport.runtime.capi import CAPISession

        self.graph_def, self.inputs, self.outputs, self.config = graph_def, inputs, outputs, config
        self.session = CAPISession(graph_def, config=config)
        self.python_session = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from graphport.core.errors import CAPIError

        tensors = {f"{self.inputs[k]}:0": v for k, v in feeds.items()}
        fetches = [f"{self.outputs[o]}:0" for o in self.outputs]
        try:
            values = self.session.run(tensors, fetches)
        except CAPIError as e:
            if "not supported by the C API binding" not in str(e):
                raise
            values = self._python().run(fetches, tensors)
        return dict(zip(self.outputs, values))

    def _python(self):
        if self.python_session is None:
            import tensorflow as tf

            graph_def = tf.compat.v1.GraphDef()
            graph_def.ParseFromString(self.graph_def)
            graph = tf.Graph()
            with graph.as_default():
                tf.graph_util.import_graph_def(graph_def, name="")
            config = tf.compat.v1.ConfigProto.FromString(self.config) if self.config else None
            self.python_session = tf.compat.v1.Session(graph=graph, config=config)
        return self.python_session

    def close(self) -> None:
        self.session.close()
        if self.python_session is not None:
            self.python_session.close()


class Worker:
    """One child process holding TF with a fixed oneDNN setting (None: whatever the environment says)."""

    def __init__(self, onednn: bool | None):
        self.onednn = onednn
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if onednn is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker; closed in close())
        self.proc = subprocess.Popen([sys.executable, "-m", "graphport.runtime.isolated"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.lock = threading.Lock()
        self.dropped: list[int] = []  # graphs garbage-collected in the parent, freed with the next request

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, request: tuple, timeout: float | None = None):
        """Send one request and return the reply; KernelCrash if the child dies, GraphRunError for TF errors."""
        with self.lock:
            try:
                dropped, self.dropped = self.dropped, []
                _send(self.proc.stdin, (dropped, request))
                kind, payload = _receive(self.proc.stdout, timeout)
            except (BrokenPipeError, EOFError, TimeoutError) as e:
                raise self._death(e) from None
        if kind == "error":
            raise GraphRunError(payload)
        return payload

    def _death(self, cause: Exception) -> KernelCrash:
        if isinstance(cause, TimeoutError):
            self.proc.kill()
        rc = self.proc.wait()
        name = "timed out" if isinstance(cause, TimeoutError) else \
            (signal.Signals(-rc).name if rc < 0 else f"exit status {rc}")
        return KernelCrash(self.onednn, name, self._stderr_tail())

    def _stderr_tail(self) -> str:
        """The child's last meaningful stderr line (glibc's 'free(): invalid pointer', a TF CHECK failure)."""
        self._stderr.seek(0)
        lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith(_NOISE)]
        return _LOG_PREFIX.sub("", lines[-1])[:300] if lines else ""

    def close(self) -> None:
        """Stop the child at once: it holds nothing worth a clean shutdown, and may still be importing TF."""
        self.proc.kill()
        self.proc.wait()
        self._stderr.close()


_POOL: dict[bool | None, Worker] = {}
_POOL_LOCK = threading.Lock()


def worker(onednn: bool | None) -> Worker:
    """The pooled worker for `onednn`, started (or restarted after a crash) as needed."""
    with _POOL_LOCK:
        w = _POOL.get(onednn)
        if w is None or not w.alive:
            if w is not None:
                w.close()
            w = _POOL[onednn] = Worker(onednn)
        return w


@atexit.register
def shutdown() -> None:
    """Stop every pooled worker (they also exit by themselves when their parent's pipe closes)."""
    with _POOL_LOCK:
        for w in _POOL.values():
            w.close()
        _POOL.clear()


class IsolatedGraph:
    """A GraphDef loaded in a pooled worker; `run` has GraphRunner's interface but raises KernelCrash on a crash.
    `config` is a serialized ConfigProto for its session (capi.session_config)."""

    def __init__(self, graph_def, inputs: dict[str, str], outputs: dict[str, str], onednn: bool | None = None,
                 timeout: float | None = 1800.0, config: bytes | None = None):
        data = graph_def if isinstance(graph_def, bytes) else graph_def.SerializeToString()
        self.inputs, self.outputs, self.timeout = inputs, outputs, timeout
        self.worker = worker(onednn)
        self.key = self.worker.call(("load", data, inputs, outputs, config), timeout)
        self._finalizer = weakref.finalize(self, self.worker.dropped.append, self.key)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.worker.call(("run", self.key, feeds), self.timeout)

    def close(self) -> None:
        if self._finalizer.detach() and self.worker.alive:
            self.worker.call(("close", self.key), self.timeout)


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream, timeout: float | None = None):
    fd = stream.fileno()
    chunks, need, header = [], _HEADER.size, True
    while True:
        if need == 0:
            if not header:
                return pickle.loads(b"".join(chunks))
            (need,), chunks, header = _HEADER.unpack(b"".join(chunks)), [], False
            continue
        if timeout is not None and not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(need, 1 << 24))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        need -= len(chunk)


def _serve() -> None:
    """Child side: answer requests until stdin closes. Stray prints go to stderr, not into the protocol."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    runners: dict[int, GraphRunner] = {}
    keys = itertools.count(1)
    from graphport.runtime.capi import lib

    lib()  # before the first request: the parent overlaps loading libtensorflow with its own work

    while True:
        try:
            dropped, request = _receive(inp)
        except EOFError:
            return
        for key in dropped:
            runners.pop(key).close()
        try:
            if request[0] == "load":
                reply = next(keys)
                runners[reply] = GraphRunner(*request[1:])
            elif request[0] == "run":
                reply = runners[request[1]].run(request[2])
            else:
                reply = runners.pop(request[1]).close()
            _send(out, ("ok", reply))
        except Exception as e:  # noqa: BLE001 (any error in TF reaches the parent as GraphRunError)
            _send(out, ("error", f"{type(e).__name__}: {_essence(str(e))}"))


def _essence(message: str) -> str:
    """What a TF error says failed, and at which node (`[[{{node X}}]]` becomes `(node X)`)."""
    nodes = re.findall(r"\{\{node ([^}]+)\}\}", message)
    lines = [ln.strip() for ln in message.splitlines() if ln.strip() and not ln.strip().startswith("[[")]
    text = " ".join(lines[:2])[:400]
    return text + (f" (node {nodes[0]})" if nodes and nodes[0] not in text else "")


if __name__ == "__main__":
    _serve()
