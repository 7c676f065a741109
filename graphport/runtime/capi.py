"""ctypes bindings to the TF C API exported by the installed `tensorflow` wheel (docs/background.md §3).

This loads models exactly as C/C++ hosts such as Essentia do: `TF_GraphImportGraphDef` for a `.pb`,
`TF_LoadSessionFromSavedModel` for a SavedModel, `TF_SessionRun` to feed and fetch. Every TF_Status is checked and
turned into `CAPIError` with TF's message; everything allocated is freed.
"""

from __future__ import annotations

import ctypes as C
import importlib.util
from pathlib import Path

import numpy as np

from graphport.core.errors import CAPIError

_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.uint8): 4,
           np.dtype(np.int16): 5, np.dtype(np.int8): 6, np.dtype(np.int64): 9, np.dtype(np.bool_): 10,
           np.dtype(np.uint16): 17, np.dtype(np.float16): 19, np.dtype(np.uint32): 22, np.dtype(np.uint64): 23}
_NP = {v: k for k, v in _DTYPES.items()}


class _Output(C.Structure):
    _fields_ = [("oper", C.c_void_p), ("index", C.c_int)]


class _Buffer(C.Structure):
    _fields_ = [("data", C.c_void_p), ("length", C.c_size_t), ("data_deallocator", C.c_void_p)]


def _library_dir() -> Path:
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or spec.origin is None:
        raise CAPIError("the tensorflow wheel is not installed; the C API comes from its libtensorflow_cc.so.2")
    return Path(spec.origin).parent


_lib: C.CDLL | None = None


def lib() -> C.CDLL:
    """Load libtensorflow_framework + libtensorflow_cc once, with prototypes for the calls we make."""
    global _lib
    if _lib is not None:
        return _lib
    # RTLD_LOCAL, not GLOBAL: TF bundles BoringSSL, and exporting its symbols globally makes a later
    # `import hashlib` bind OpenSSL calls to them and crash. The framework library comes in via DT_NEEDED.
    L = C.CDLL(str(_library_dir() / "libtensorflow_cc.so.2"), mode=C.RTLD_LOCAL)
    p, i, s = C.c_void_p, C.c_int, C.c_char_p
    protos = {
        "TF_Version": (s, []), "TF_NewStatus": (p, []), "TF_DeleteStatus": (None, [p]),
        "TF_GetCode": (i, [p]), "TF_Message": (s, [p]),
        "TF_NewGraph": (p, []), "TF_DeleteGraph": (None, [p]),
        "TF_NewSessionOptions": (p, []), "TF_DeleteSessionOptions": (None, [p]),
        "TF_SetConfig": (None, [p, p, C.c_size_t, p]),
        "TF_NewImportGraphDefOptions": (p, []), "TF_DeleteImportGraphDefOptions": (None, [p]),
        "TF_NewBufferFromString": (C.POINTER(_Buffer), [p, C.c_size_t]),
        "TF_NewBuffer": (C.POINTER(_Buffer), []), "TF_DeleteBuffer": (None, [C.POINTER(_Buffer)]),
        "TF_GraphImportGraphDef": (None, [p, C.POINTER(_Buffer), p, p]),
        "TF_NewSession": (p, [p, p, p]),
        "TF_LoadSessionFromSavedModel": (p, [p, p, s, C.POINTER(s), i, p, C.POINTER(_Buffer), p]),
        "TF_CloseSession": (None, [p, p]), "TF_DeleteSession": (None, [p, p]),
        "TF_GraphOperationByName": (p, [p, s]),
        "TF_AllocateTensor": (p, [i, C.POINTER(C.c_int64), i, C.c_size_t]), "TF_DeleteTensor": (None, [p]),
        "TF_TensorData": (p, [p]), "TF_TensorByteSize": (C.c_size_t, [p]), "TF_TensorType": (i, [p]),
        "TF_NumDims": (i, [p]), "TF_Dim": (C.c_int64, [p, i]),
        "TF_SessionRun": (None, [p, C.POINTER(_Buffer), C.POINTER(_Output), C.POINTER(p), i, C.POINTER(_Output),
                                 C.POINTER(p), i, p, i, C.POINTER(_Buffer), p]),
    }
    for name, (res, args) in protos.items():
        fn = getattr(L, name)
        fn.restype, fn.argtypes = res, args
    _lib = L
    return L


class _Status:
    def __init__(self) -> None:
        self.ptr = lib().TF_NewStatus()

    def check(self, what: str) -> None:
        if lib().TF_GetCode(self.ptr) != 0:
            raise CAPIError(f"{what}: {lib().TF_Message(self.ptr).decode(errors='replace')}")

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            lib().TF_DeleteStatus(self.ptr)


def session_config(intra_op: int | None = None, inter_op: int | None = None, bf16: bool = False) -> bytes:
    """A serialized `tensorflow.ConfigProto` for graphport's own inference sessions (`predict`, and any backend given
    a thread budget or a precision): the two thread pools' sizes (None: TF's default), a Grappler that skips what
    cannot help a converted graph, and with `bf16` oneDNN's bfloat16 rewrite (runtime/precision.py).

    Grappler runs once, at a session's first run, and costs more than a steady batch of the seed B0 (0.51-0.58 s
    against 0.10 s at batch 64 with oneDNN on). Of that: the layout optimizer (it turns NCHW graphs into NHWC ones,
    and graphport's already are), the memory optimizer (swapping and recomputation for training), and the second
    round of every pass, which changed no node of the seed graph. Off, the first run took 0.27-0.39 s; the fusions
    of the first round (the remapper's, oneDNN's) are the same. Hosts keep their own configuration.

    Written by hand so that choosing threads costs no `tensorflow` or protobuf import: `predict` on a converted model
    needs only the two shared libraries. ConfigProto fields 2 and 5 are the pools; 10 is GraphOptions, whose field
    10 is RewriterConfig: layout_optimizer (1) = OFF (2), memory_optimization (4) = NO_MEM_OPT (1),
    meta_optimizer_iterations (12) = ONE (1), auto_mixed_precision_onednn_bfloat16 (31) = ON (1).
    """
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def number(field: int, value: int) -> bytes:  # wire type 0: ints and enums
        return varint(field << 3) + varint(value)

    def message(field: int, body: bytes) -> bytes:  # wire type 2
        return varint(field << 3 | 2) + varint(len(body)) + body

    rewriter = number(1, 2) + number(4, 1) + number(12, 1) + (number(31, 1) if bf16 else b"")
    pools = (number(2, intra_op) if intra_op else b"") + (number(5, inter_op) if inter_op else b"")
    return pools + message(10, message(10, rewriter))


class CAPISession:
    """A TF_Session over a frozen `.pb`, a SavedModel directory, or a serialized GraphDef given as bytes; feeds and
    fetches are 'op' or 'op:index'. `config` is a serialized ConfigProto (e.g. `session_config`)."""

    def __init__(self, path: str | Path | bytes, tags: tuple[str, ...] = ("serve",), config: bytes | None = None):
        L = lib()
        data = path if isinstance(path, bytes) else None
        path = Path("<GraphDef bytes>") if data is not None else Path(path)
        self.graph = L.TF_NewGraph()
        self.session = None
        status = _Status()
        opts = L.TF_NewSessionOptions()
        try:
            if config:
                L.TF_SetConfig(opts, config, len(config), status.ptr)
                status.check("TF_SetConfig")
            if data is None and path.is_dir():
                ctags = (C.c_char_p * len(tags))(*[t.encode() for t in tags])
                self.session = L.TF_LoadSessionFromSavedModel(opts, None, str(path).encode(), ctags, len(tags),
                                                              self.graph, None, status.ptr)
                status.check(f"TF_LoadSessionFromSavedModel({path})")
            else:
                data = path.read_bytes() if data is None else data
                buf = L.TF_NewBufferFromString(data, len(data))
                iopts = L.TF_NewImportGraphDefOptions()
                try:
                    L.TF_GraphImportGraphDef(self.graph, buf, iopts, status.ptr)
                    status.check(f"TF_GraphImportGraphDef({path})")
                finally:
                    L.TF_DeleteImportGraphDefOptions(iopts)
                    L.TF_DeleteBuffer(buf)
                self.session = L.TF_NewSession(self.graph, opts, status.ptr)
                status.check("TF_NewSession")
        except BaseException:
            self.close()
            raise
        finally:
            L.TF_DeleteSessionOptions(opts)

    def _output(self, name: str) -> _Output:
        op, _, idx = name.partition(":")
        oper = lib().TF_GraphOperationByName(self.graph, op.encode())
        if not oper:
            raise CAPIError(f"no operation named '{op}' in the graph")
        return _Output(oper, int(idx or 0))

    def run(self, feeds: dict[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
        return self.run_traced(feeds, fetches)[0]

    def run_traced(self, feeds: dict[str, np.ndarray], fetches: list[str],
                   run_options: bytes | None = None) -> tuple[list[np.ndarray], bytes]:
        """TF_SessionRun; with serialized RunOptions, also return the serialized RunMetadata (step stats)."""
        L = lib()
        opts = L.TF_NewBufferFromString(run_options, len(run_options)) if run_options else None
        meta = L.TF_NewBuffer() if run_options else None
        ins = (_Output * len(feeds))(*[self._output(k) for k in feeds])
        in_vals = (C.c_void_p * len(feeds))(*[_to_tensor(np.asarray(v)) for v in feeds.values()])
        outs = (_Output * len(fetches))(*[self._output(f) for f in fetches])
        out_vals = (C.c_void_p * len(fetches))()
        status = _Status()
        try:
            L.TF_SessionRun(self.session, opts, ins, in_vals, len(feeds), outs, out_vals, len(fetches),
                            None, 0, meta, status.ptr)
            status.check("TF_SessionRun")
            md = C.string_at(meta.contents.data, meta.contents.length) if meta else b""
            return [_from_tensor(t) for t in out_vals], md
        finally:
            for t in list(in_vals) + list(out_vals):
                if t:
                    L.TF_DeleteTensor(t)
            for buf in (opts, meta):
                if buf:
                    L.TF_DeleteBuffer(buf)

    def close(self) -> None:
        L = lib()
        status = _Status()
        if self.session:
            L.TF_CloseSession(self.session, status.ptr)
            L.TF_DeleteSession(self.session, status.ptr)
            self.session = None
        if self.graph:
            L.TF_DeleteGraph(self.graph)
            self.graph = None

    def __enter__(self) -> CAPISession:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _to_tensor(arr: np.ndarray) -> int:
    if arr.dtype not in _DTYPES:
        raise CAPIError(f"dtype {arr.dtype} is not supported by the C API binding")
    arr = np.require(arr, requirements="C")  # keeps a scalar 0-d (ascontiguousarray makes it 1-d)
    dims = (C.c_int64 * arr.ndim)(*arr.shape)
    t = lib().TF_AllocateTensor(_DTYPES[arr.dtype], dims, arr.ndim, arr.nbytes)
    C.memmove(lib().TF_TensorData(t), arr.ctypes.data, arr.nbytes)
    return t


def _from_tensor(t: int) -> np.ndarray:
    L = lib()
    dtype = _NP.get(L.TF_TensorType(t))
    if dtype is None:
        raise CAPIError(f"output dtype code {L.TF_TensorType(t)} is not supported by the C API binding")
    shape = [L.TF_Dim(t, i) for i in range(L.TF_NumDims(t))]
    buf = (C.c_char * L.TF_TensorByteSize(t)).from_address(L.TF_TensorData(t))
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape)
