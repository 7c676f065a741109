"""One interface over every way a host runs a model: `load(path, backend) -> Session`, `session.run(feeds)`.

Backends: `capi` (the TF C API through ctypes, what C/C++ hosts do), `session` (tf.compat.v1 graph mode),
`tf2` (tf.saved_model.load), `onnxruntime`, and `essentia` (Essentia's libtensorflow 2.5, in its own venv).
Feeds and results are keyed by the user-facing names of `ModelInfo` (the ONNX names for graphport output).
`threads` (where given) sizes the backend's intra-op pool, with inter-op 1, so that a host that runs other work
(predict's front end) can keep the model within a core budget instead of TF's default of every core.
`precision` bf16 (the TF backends, where the CPU has it) turns on oneDNN's bfloat16 rewrite (runtime/precision.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphport.core.errors import GraphportError
from graphport.runtime.model_info import IOInfo, ModelInfo, resolve
from graphport.runtime.precision import TF_BACKENDS, choose

BACKENDS = ("capi", "session", "tf2", "onnxruntime", "essentia")


class Session:
    backend = ""

    def __init__(self, info: ModelInfo, precision: str = "fp32"):
        self.info, self.precision = info, precision

    @property
    def inputs(self) -> list[IOInfo]:
        return self.info.inputs

    @property
    def outputs(self) -> list[IOInfo]:
        return self.info.outputs

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Reject wrong names, ranks, fixed dims and batch 0 with a clear error before TF sees them."""
        known = {i.name: i for i in self.inputs}
        missing = set(known) - set(feeds)
        extra = set(feeds) - set(known)
        if missing or extra:
            raise GraphportError(f"feeds must be exactly {sorted(known)}; missing {sorted(missing)}, "
                                 f"unknown {sorted(extra)}.")
        out = {}
        for name, value in feeds.items():
            arr, spec = np.asarray(value), known[name]
            if spec.shape is not None:
                want = ["?" if not isinstance(d, int) else d for d in spec.shape]
                if arr.ndim != len(want) or any(isinstance(d, int) and d != a for d, a in zip(want, arr.shape)):
                    raise GraphportError(f"input '{name}' must have shape {want}, got {list(arr.shape)}.")
            if arr.ndim and arr.shape[0] == 0:
                raise GraphportError(f"input '{name}' has batch size 0; feed at least one row.")
            if str(arr.dtype) != spec.dtype:
                raise GraphportError(f"input '{name}' must be {spec.dtype}, got {arr.dtype}.")
            out[name] = arr
        return out

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self.check_feeds(feeds))

    def tensor_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds keyed by the backend's tensor names instead of the user-facing names."""
        tensors = {i.name: i.tensor for i in self.inputs}
        return {tensors[k]: v for k, v in feeds.items()}

    @property
    def fetches(self) -> list[str]:
        return [o.tensor for o in self.outputs]

    def named(self, values: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {o.name: v for o, v in zip(self.outputs, values)}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run_traced(self, feeds: dict[str, np.ndarray]):
        """Run once with TF's full tracing; return the outputs and the step stats (`StepStats`) of that run."""
        from tensorflow.core.protobuf import config_pb2

        metadata = config_pb2.RunMetadata()
        options = config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE)
        values = self._run_traced(self.tensor_feeds(self.check_feeds(feeds)), options, metadata)
        return self.named(values), metadata.step_stats

    def _run_traced(self, feeds: dict[str, np.ndarray], options, metadata) -> list[np.ndarray]:
        raise GraphportError(f"the {self.backend} backend cannot trace a run; profile with session, capi or tf2.")

    def close(self) -> None:
        """Release the backend's resources (its TF session, where it holds one)."""
        close = getattr(getattr(self, "sess", None), "close", None)
        if close is not None:
            close()


class CAPIBackend(Session):
    backend = "capi"

    def __init__(self, info: ModelInfo, threads: int | None = None, precision: str = "fp32"):
        from graphport.runtime.capi import CAPISession

        super().__init__(info, precision)
        self.sess = CAPISession(info.path, config=own_config(threads, precision))

    def _run(self, feeds):
        return self.named(self.sess.run(self.tensor_feeds(feeds), self.fetches))

    def _run_traced(self, feeds, options, metadata):
        values, raw = self.sess.run_traced(feeds, self.fetches, options.SerializeToString())
        metadata.ParseFromString(raw)
        return values


class TFSessionBackend(Session):
    backend = "session"

    def __init__(self, info: ModelInfo, threads: int | None = None, precision: str = "fp32"):
        import tensorflow as tf

        super().__init__(info, precision)
        self.graph = tf.Graph()
        config = own_config(threads, precision)
        config = tf.compat.v1.ConfigProto.FromString(config) if config else None
        self.sess = tf.compat.v1.Session(graph=self.graph, config=config)
        with self.graph.as_default():
            if info.kind == "saved_model":
                tf.compat.v1.saved_model.load(self.sess, ["serve"], str(info.path))
            else:
                gd = tf.compat.v1.GraphDef()
                gd.ParseFromString(Path(info.path).read_bytes())
                tf.graph_util.import_graph_def(gd, name="")

    def _run(self, feeds):
        return self.named(self.sess.run(self.fetches, self.tensor_feeds(feeds)))

    def _run_traced(self, feeds, options, metadata):
        return self.sess.run(self.fetches, feeds, options=options, run_metadata=metadata)


class TF2Backend(Session):
    backend = "tf2"

    def __init__(self, info: ModelInfo, threads: int | None = None, precision: str = "fp32"):
        import tensorflow as tf

        super().__init__(info, precision)
        if info.kind != "saved_model":
            raise GraphportError("the tf2 backend loads SavedModels; use capi or session for a .pb.")
        if threads:  # process-wide in TF2, and only before its runtime starts: a later change raises RuntimeError
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        # process-wide too: every function traced from now on gets the rewrite, or loses it
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": precision == "bf16"})
        self.model = tf.saved_model.load(str(info.path))
        self.fn = self.model.signatures["serving_default"]
        self.args = {i.name: a for i, a in zip(self.inputs, sorted(self.fn.structured_input_signature[1]))}
        self.keys = sorted(self.fn.structured_outputs)

    def _run(self, feeds):
        result = self.fn(**{self.args[k]: v for k, v in feeds.items()})
        return {o.name: result[k].numpy() for o, k in zip(self.outputs, self.keys)}

    def run_traced(self, feeds):
        from tensorflow.python.eager import context

        context.enable_run_metadata()
        try:
            values = self.run(feeds)
            return values, context.export_run_metadata().step_stats
        finally:
            context.disable_run_metadata()


class ORTBackend(Session):
    backend = "onnxruntime"

    def __init__(self, info: ModelInfo, threads: int | None = None):
        import onnxruntime as ort

        super().__init__(info)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.sess = ort.InferenceSession(str(info.path), options, providers=["CPUExecutionProvider"])

    def _run(self, feeds):
        return dict(zip([o.name for o in self.outputs], self.sess.run([o.name for o in self.outputs], feeds)))


class EssentiaBackend(Session):
    """Each run is one Essentia subprocess (its libtensorflow cannot share a process with the TF wheel)."""

    backend = "essentia"

    def __init__(self, info: ModelInfo, timeout: float = 600.0):
        super().__init__(info)
        if len(info.inputs) != 1 or len(info.outputs) != 1:
            raise GraphportError("the essentia backend runs single-input, single-output models.")
        self.timeout = timeout

    def _run(self, feeds):
        from graphport.runtime.essentia_host import essentia_run, host_op_name

        (arr,) = feeds.values()
        res = essentia_run(self.info.path, host_op_name(self.inputs[0].tensor), host_op_name(self.outputs[0].tensor), [arr], self.timeout,
                           steady_runs=0)
        if not res["ok"]:
            raise GraphportError(f"Essentia failed: {res.get('error') or 'timed out'}")
        out = np.asarray(res["outputs"][0])
        return {self.outputs[0].name: out.reshape(out.shape[0], *[d for d in out.shape[1:] if d != 1])}


_CLASSES = {"capi": CAPIBackend, "session": TFSessionBackend, "tf2": TF2Backend, "onnxruntime": ORTBackend,
            "essentia": EssentiaBackend}


def warm_up(backend: str) -> None:
    """Import the backend's libraries: interpreter and library start-up are not part of a model's load time."""
    if backend == "capi":
        from graphport.runtime.capi import lib

        lib()
    elif backend in ("session", "tf2"):
        import tensorflow  # noqa: F401
    elif backend == "onnxruntime":
        import onnxruntime  # noqa: F401


def load(path: str | os.PathLike, backend: str = "auto", threads: int | None = None,
         precision: str = "fp32") -> Session:
    """Open `path` with `backend` ('auto': onnxruntime for .onnx, tf2 for a SavedModel, capi for a .pb); `threads`
    sizes its intra-op pool (None: the backend's default, every core). The essentia backend takes no budget.
    `precision` is fp32, bf16 or auto (runtime/precision.py); the session's `precision` says which it got."""
    p = Path(path)
    kind = "saved_model" if backend == "tf2" else None
    info = resolve(p, kind)
    if backend == "auto":
        backend = {"onnx": "onnxruntime", "saved_model": "tf2", "pb": "capi"}[info.kind]
    if backend not in _CLASSES:
        raise GraphportError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}.")
    if (backend == "onnxruntime") != (info.kind == "onnx"):
        raise GraphportError(f"backend '{backend}' cannot run a {info.kind} model.")
    if threads and backend == "essentia":
        raise GraphportError("the essentia backend runs in Essentia's own process and takes no thread budget.")
    chosen = choose(precision, backend, verified=info.bf16_ok)
    if backend in TF_BACKENDS:
        return _CLASSES[backend](info, threads, chosen)
    return _CLASSES[backend](info, threads) if threads else _CLASSES[backend](info)


def own_config(threads: int | None, precision: str) -> bytes | None:
    """The ConfigProto of a session graphport opens (None: the host's defaults, as when nothing is asked)."""
    from graphport.runtime.capi import session_config

    bf16 = precision == "bf16"
    return session_config(threads, 1 if threads else None, bf16) if threads or bf16 else None
