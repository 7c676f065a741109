"""`model.json`, the description beside every graphport output folder (`convert` and `doctor --fix` write it).

One schema, versioned, one writer and one reader, so that every command accepts every graphport output folder.
The layout is documented in docs/model_json.md. Version 1 (`"schema": "graphport.model/1"`) has, at least:

    inputs / outputs: [{"name", "dtype", "shape", "pb": {"op", "tensor"}, "saved_model": {"tensor", ...}}]

`name` is what a user feeds or fetches by (the ONNX name for `convert`, the signature key for `doctor --fix`);
`pb.tensor` and `saved_model.tensor` are the TF tensor names a host passes for each artifact. Producers add their
own keys beside these (verification results, op census, source hash, ...). Files written before the schema was
versioned by `convert` have the same endpoint layout and are read as version 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from graphport.core.atomic import write_file
from graphport.core.errors import GraphportError

SCHEMA = "graphport.model/1"
FILENAME = "model.json"
ARTIFACTS = {"pb": "model.pb", "saved_model": "saved_model"}


def endpoint(name: str, dtype: str | None, shape: list | None, pb_op: str, saved_model: dict) -> dict:
    """One input or output entry: the user-facing name and the tensor names per artifact."""
    return {"name": name, "dtype": dtype, "shape": shape, "pb": {"op": pb_op, "tensor": f"{pb_op}:0"},
            "saved_model": dict(saved_model)}


def write(folder: str | os.PathLike, producer: str, inputs: list[dict], outputs: list[dict], **extra) -> Path:
    """Write `folder/model.json` atomically, with the schema tag and the producing command first."""
    from graphport.core.version import __version__

    meta = {"schema": SCHEMA, "producer": producer, "graphport_version": __version__, "inputs": inputs,
            "outputs": outputs, **extra}
    return write_file(Path(folder) / FILENAME, json.dumps(meta, indent=2, default=str) + "\n")


def rewrite(folder: str | os.PathLike, meta: dict) -> Path:
    """Write back a model.json read with `read` and amended by a later step (the schema tag, producer and version
    are written again as `write` writes them)."""
    extra = {k: v for k, v in meta.items() if k not in ("schema", "producer", "graphport_version", "inputs", "outputs")}
    return write(folder, meta["producer"], meta["inputs"], meta["outputs"], **extra)


def is_output_folder(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / FILENAME).is_file()


def read(folder: str | os.PathLike) -> dict:
    """The parsed model.json of a graphport output folder, checked against the schema; GraphportError otherwise."""
    path = Path(folder) / FILENAME
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphportError(f"'{path}' is not a readable graphport model.json: {e}.") from None
    schema = meta.get("schema") if isinstance(meta, dict) else None
    if schema not in (SCHEMA, None):
        raise GraphportError(f"'{path}' has schema '{schema}', which this graphport does not read ({SCHEMA}); "
                             "convert the model again with this version.")
    for side in ("inputs", "outputs"):
        entries = meta.get(side) if isinstance(meta, dict) else None
        if not isinstance(entries, list) or not all(_valid(e) for e in entries):
            raise GraphportError(f"'{path}' is not a graphport model.json: its '{side}' entries lack name, pb and "
                                 "saved_model tensor names. Write the folder again with `graphport convert` or "
                                 "`graphport doctor --fix`.")
    return meta


def artifact_path(folder: str | os.PathLike, artifact: str) -> Path:
    return Path(folder) / ARTIFACTS[artifact]


def _valid(entry: object) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("name"), str)
            and all(isinstance(entry.get(a), dict) and "tensor" in entry[a] for a in ARTIFACTS))
