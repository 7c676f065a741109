"""What a model expects and returns, read from the file without running it, for any of the formats we load.

Formats: an `.onnx` file, a frozen `.pb`, a SavedModel directory, or a graphport output directory (model.json
beside model.pb and saved_model/). Names follow ORT's idiom: `name` is what the user feeds by; `tensor` is what the
backend needs (a TF tensor name such as `serving_default_melspectrogram:0`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphport.core import essentia_metadata, model_json
from graphport.core.errors import GraphportError


@dataclass
class IOInfo:
    name: str
    shape: list[int | str | None] | None
    dtype: str
    tensor: str = ""


@dataclass
class ModelInfo:
    kind: str  # "onnx" | "pb" | "saved_model"
    path: Path
    inputs: list[IOInfo] = field(default_factory=list)
    outputs: list[IOInfo] = field(default_factory=list)
    bf16_ok: bool | None = None  # model.json's bf16 verdict (conversion/verify.py); None: not measured
    dim_sizes: dict[str, int] = field(default_factory=dict)  # the first sizes verified for named dims (model.json)


def resolve(path: str | Path, kind: str | None = None) -> ModelInfo:
    """Describe `path`; for a graphport output dir, `kind` picks the artifact ('pb' by default, or 'saved_model')."""
    p = Path(path)
    if not p.exists():
        raise GraphportError(f"'{p}' does not exist.")
    if model_json.is_output_folder(p):
        return _from_folder(p, kind or "pb")
    # A converted folder's own model.pb or saved_model/: its model.json describes it, so reading it needs no
    # `import tensorflow` (seconds), which a foreign .pb or SavedModel does.
    own = [a for a in ("pb", "saved_model") if kind in (None, a) and model_json.artifact_path(p.parent, a) == p]
    if own and model_json.is_output_folder(p.parent):
        return _from_folder(p.parent, own[0])
    if p.is_dir() and (p / "saved_model.pb").exists():
        return _saved_model(p)
    if p.suffix == ".onnx":
        return _onnx(p)
    packaged = essentia_metadata.read_beside(p) if p.suffix == ".pb" else None
    if packaged is not None:  # a .pb packaged as Essentia packages its models: the JSON names what to feed and fetch
        return _from_essentia(p, packaged)
    if p.suffix in (".pb", ".pbtxt") or p.is_file():
        return _graph_def(p)
    raise GraphportError(f"'{p}' is neither an .onnx file, a .pb GraphDef nor a SavedModel directory.")


def _from_folder(folder: Path, kind: str) -> ModelInfo:
    meta = model_json.read(folder)
    bf16 = (meta.get("verification") or {}).get("bf16") or {}
    return ModelInfo(kind, model_json.artifact_path(folder, kind),
                     *[[IOInfo(e["name"], e["shape"], e["dtype"] or "float32", e[kind]["tensor"])
                        for e in meta[side]] for side in ("inputs", "outputs")], bf16.get("ok"),
                     dict((meta.get("verified_dim_sizes") or [{}])[0]))


_ESSENTIA_DTYPES = {v: k for k, v in essentia_metadata.ESSENTIA_TYPES.items()}


def _from_essentia(p: Path, meta: essentia_metadata.EssentiaMetadata) -> ModelInfo:
    """Names as Essentia's JSON gives them ('PartitionedCall:1'); -1 dims are dynamic."""

    def conv(t: essentia_metadata.Tensor) -> IOInfo:
        shape = None if t.shape is None else [None if d == essentia_metadata.DYNAMIC else d for d in t.shape]
        return IOInfo(t.name, shape, _ESSENTIA_DTYPES.get(t.type, t.type), essentia_metadata.tensor_name(t.name))

    return ModelInfo("pb", p, [conv(t) for t in meta.inputs], [conv(t) for t in meta.outputs])


_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8"}


def _onnx(p: Path) -> ModelInfo:
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise GraphportError(f"ONNX Runtime cannot load '{p}': {e}") from e

    def conv(a) -> IOInfo:
        return IOInfo(a.name, list(a.shape), _ORT_TYPES.get(a.type, a.type), a.name)

    return ModelInfo("onnx", p, [conv(a) for a in sess.get_inputs()], [conv(a) for a in sess.get_outputs()])


def _saved_model(p: Path) -> ModelInfo:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString((p / "saved_model.pb").read_bytes())
    except Exception as e:
        raise GraphportError(f"'{p}/saved_model.pb' is not a readable SavedModel: {e}") from e
    mg = next((m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags), sm.meta_graphs[0])
    sigs = mg.signature_def
    if not sigs:
        raise GraphportError(f"SavedModel '{p}' has no signature to call.")
    sig = sigs["serving_default"] if "serving_default" in sigs else sigs[min(sigs)]

    def conv(key: str, t) -> IOInfo:
        shape = None if t.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None for d in t.tensor_shape.dim]
        return IOInfo(key, shape, tf.as_dtype(t.dtype).name, t.name)

    return ModelInfo("saved_model", p, [conv(k, v) for k, v in sorted(sig.inputs.items())],
                     [conv(k, v) for k, v in sorted(sig.outputs.items())])


def _graph_def(p: Path) -> ModelInfo:
    """Inputs are the Placeholders; outputs are the ops nothing consumes (Const/NoOp/Assert excluded)."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    try:
        gd.ParseFromString(p.read_bytes())
    except Exception as e:
        raise GraphportError(f"'{p}' is not a readable TF GraphDef: {e}") from e
    used = {i.split(":")[0].lstrip("^") for n in gd.node for i in n.input}
    inputs, outputs = [], []
    for n in gd.node:
        if n.op == "Placeholder":
            dims = n.attr["shape"].shape
            shape = None if dims.unknown_rank else [d.size if d.size >= 0 else None for d in dims.dim]
            inputs.append(IOInfo(n.name, shape, tf.as_dtype(n.attr["dtype"].type).name, f"{n.name}:0"))
        elif n.name not in used and n.op not in ("Const", "NoOp", "Assert", "SaveV2", "RestoreV2"):
            dtype = tf.as_dtype(n.attr["T"].type).name if "T" in n.attr else "float32"
            outputs.append(IOInfo(n.name, None, dtype, f"{n.name}:0"))
    if not inputs or not outputs:
        raise GraphportError(f"'{p}' has no Placeholder inputs or no outputs; is it a frozen inference graph?")
    return ModelInfo("pb", p, inputs, outputs)
