"""Essentia's model packaging: the metadata `.json` that Essentia ships beside each frozen `.pb`.

Why: an Essentia user reads a model's input and output names, its classes and the algorithm and sample rate to run
it with from that JSON (`discogs-effnet-bs64-1.pb` + `discogs-effnet-bs64-1.json`), never from graphport's own
`model.json`. `convert` writes one (`model.essentia.json` in the output folder, or where `--essentia-json` says)
and `predict` reads one lying beside a `.pb`, so a model packaged the way Essentia packages its own runs with no
flags. One writer (`build` + `write`) and one reader (`read`, `read_beside`); the layout is in docs/model_json.md.

Essentia publishes fixed shapes only (batch 64). graphport keeps dims dynamic, so a dynamic dim is written as -1
(TF's own notation for an unknown dim, so that readers doing arithmetic on shapes still get integers) and its name
goes in `dim_names` beside `shape`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from graphport.core.atomic import write_file
from graphport.core.errors import GraphportError

FILENAME = "model.essentia.json"
DYNAMIC = -1
PURPOSES = ("predictions", "embeddings")
# ONNX ops whose output is a score per class: what Essentia calls an output of purpose "predictions"
SCORE_OPS = {"Sigmoid", "Softmax", "LogSoftmax"}
# numpy dtype names -> the type names Essentia's JSONs use
ESSENTIA_TYPES = {"float32": "float", "float64": "double", "float16": "half", "int32": "int32", "int64": "int64",
                  "uint8": "uint8", "int8": "int8", "bool": "bool"}


@dataclass
class Packaging:
    """What the user tells `convert` about the model for its Essentia JSON (every field optional)."""

    name: str | None = None
    classes: list[str] | None = None
    sample_rate: int | None = None
    algorithm: str | None = None
    purposes: dict[str, str] = field(default_factory=dict)  # output name -> "predictions" | "embeddings"
    path: Path | None = None  # where to write it; None: FILENAME in the output folder


@dataclass
class Tensor:
    """One entry of `schema.inputs` or `schema.outputs`."""

    name: str
    type: str
    shape: list[int] | None
    op: str | None = None
    output_purpose: str | None = None


@dataclass
class EssentiaMetadata:
    """What a reader takes from an Essentia JSON."""

    path: Path
    inputs: list[Tensor]
    outputs: list[Tensor]
    classes: list[str] | None
    sample_rate: int | None
    algorithm: str | None


def output_purposes(outputs: list[tuple[str, str | None, list | None]], packaging: Packaging) -> dict[str, str]:
    """Each output's purpose: the user's word first; else, with classes, an output as wide as the class list holds
    predictions; else a lone output, or one computed by a score op (Sigmoid, Softmax), holds predictions, and the
    rest are embeddings. `outputs` are (name, ONNX op, shape)."""
    unknown = sorted(set(packaging.purposes) - {n for n, _, _ in outputs})
    if unknown:
        raise GraphportError(f"--output-purpose names {unknown}, which are not outputs of the model "
                             f"({[n for n, _, _ in outputs]}).")
    bad = {n: p for n, p in packaging.purposes.items() if p not in PURPOSES}
    if bad:
        raise GraphportError(f"--output-purpose {bad}: the purpose is one of {list(PURPOSES)}.")
    n_classes = len(packaging.classes) if packaging.classes else None

    def guess(op: str | None, shape: list | None) -> str:
        if n_classes is not None and shape:
            return "predictions" if shape[-1] == n_classes else "embeddings"
        return "predictions" if len(outputs) == 1 or op in SCORE_OPS else "embeddings"

    return {n: packaging.purposes.get(n) or guess(op, shape) for n, op, shape in outputs}


def tensor_entry(name: str, dtype: str | None, shape: list | None, op: str | None = None,
                 purpose: str | None = None) -> dict:
    """One schema entry; symbolic dims become -1 with their names in `dim_names`."""
    entry: dict = {"name": name, "type": ESSENTIA_TYPES.get(dtype or "float32", dtype)}
    if shape is not None:
        entry["shape"] = [d if isinstance(d, int) else DYNAMIC for d in shape]
        if any(not isinstance(d, int) for d in shape):
            entry["dim_names"] = [None if isinstance(d, int) else str(d) for d in shape]
    if op is not None:
        entry["op"] = op
    if purpose is not None:
        entry["output_purpose"] = purpose
    return entry


def build(packaging: Packaging, inputs: list[dict], outputs: list[dict], framework_version: str,
          model_types: list[str], graphport: dict) -> dict:
    """The JSON document, with Essentia's keys in Essentia's order and graphport's own facts under `graphport`."""
    meta: dict = {"name": packaging.name, "version": "1",
                  "framework": "tensorflow", "framework_version": framework_version, "model_types": model_types}
    if packaging.classes:
        meta["classes"] = list(packaging.classes)
    meta["schema"] = {"inputs": inputs, "outputs": outputs}
    inference = {k: v for k, v in (("sample_rate", packaging.sample_rate), ("algorithm", packaging.algorithm))
                 if v is not None}
    if inference:
        meta["inference"] = inference
    meta["graphport"] = graphport
    return meta


def write(path: str | os.PathLike, meta: dict) -> Path:
    return write_file(Path(path), json.dumps(meta, indent=2) + "\n")


def read_classes(path: str | os.PathLike) -> list[str]:
    """A labels file: a JSON list of strings, or one label per line (blank lines skipped)."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise GraphportError(f"cannot read the labels file '{p}': {e}.") from None
    if text.lstrip().startswith("["):
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as e:
            raise GraphportError(f"labels file '{p}' starts like a JSON list but is not one: {e}.") from None
        if not all(isinstance(x, str) for x in labels):
            raise GraphportError(f"labels file '{p}' must list strings.")
        return labels
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise GraphportError(f"labels file '{p}' has no labels.")
    return labels


def read_beside(model: str | os.PathLike) -> EssentiaMetadata | None:
    """The Essentia JSON that goes with `model` (a .pb or a graphport output folder), read, if there is one: X.json
    beside X.pb as Essentia names it (when it is an Essentia JSON, not graphport's model.json), else
    X.essentia.json, or the output folder's FILENAME."""
    p = Path(model)
    candidates = [p / FILENAME] if p.is_dir() else [p.with_suffix(".json"), p.with_suffix(".essentia.json")]
    return next((read(c) for c in candidates if c.is_file() and _is_essentia(c)), None)


def read(path: str | os.PathLike) -> EssentiaMetadata:
    """The fields Essentia's loaders read, checked; a malformed file is a user error naming what is wrong."""
    p = Path(path)
    try:
        meta = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphportError(f"'{p}' is not a readable Essentia metadata JSON: {e}.") from None
    schema = meta.get("schema") if isinstance(meta, dict) else None
    if not isinstance(schema, dict):
        raise GraphportError(f"'{p}' has no 'schema' object with 'inputs' and 'outputs', so it is not an Essentia "
                             "metadata JSON.")
    sides = {side: [_tensor(p, side, e) for e in _entries(p, schema, side)] for side in ("inputs", "outputs")}
    inference = meta.get("inference") or {}
    rate = inference.get("sample_rate") if isinstance(inference, dict) else None
    if rate is not None and (not isinstance(rate, int) or rate < 1):
        raise GraphportError(f"'{p}': inference.sample_rate must be a positive integer, got {rate!r}.")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise GraphportError(f"'{p}': 'classes' must be a list of strings.")
    algorithm = inference.get("algorithm") if isinstance(inference, dict) else None
    return EssentiaMetadata(p, sides["inputs"], sides["outputs"], classes, rate, algorithm)


def tensor_name(name: str) -> str:
    """Essentia names a tensor by op ('model/Sigmoid') or op:index ('PartitionedCall:1'); TF wants op:index."""
    op, sep, index = name.rpartition(":")
    return name if sep and index.isdigit() and op else f"{name}:0"


def _is_essentia(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("schema"), dict)


def _entries(path: Path, schema: dict, side: str) -> list:
    entries = schema.get(side)
    if not isinstance(entries, list) or not entries:
        raise GraphportError(f"'{path}': schema.{side} must be a non-empty list.")
    return entries


def _tensor(path: Path, side: str, entry: object) -> Tensor:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise GraphportError(f"'{path}': every schema.{side} entry needs a 'name' (the TF tensor to "
                             f"{'feed' if side == 'inputs' else 'fetch'}); got {entry!r}.")
    purpose = entry.get("output_purpose")
    if purpose is not None and purpose not in PURPOSES:
        raise GraphportError(f"'{path}': output '{entry['name']}' has output_purpose {purpose!r}; Essentia uses "
                             f"{list(PURPOSES)}.")
    shape = entry.get("shape")
    return Tensor(entry["name"], entry.get("type", "float"), shape if isinstance(shape, list) else None,
                  entry.get("op"), purpose)
