"""The model side of `predict`: an .onnx converted once and cached, its fingerprint, and its mel input and outputs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphport.audio import N_BANDS
from graphport.core import model_json
from graphport.core.atomic import publish_dir, staging_dir
from graphport.core.errors import GraphportError


def cache_dir() -> Path:
    """Where converted models are cached: $GRAPHPORT_CACHE_DIR, else ~/.cache/graphport."""
    env = os.environ.get("GRAPHPORT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graphport"


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (models can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def converter_stamp() -> str:
    """A hash of the graphport package's sources: conversions cached by an older graphport (before an upgrade or a
    converter change) are not reused, so a cached model always has the current rewrites and checks."""
    return files_sha256(sorted(Path(__file__).resolve().parents[1].rglob("*.py")))[:16]


def prepare_model(model: str | os.PathLike, log: Callable[[str], None] = print, backend: str = "capi") -> Path:
    """A loadable model for `model` and `backend`: an .onnx is converted once and cached by its sha256 and the
    converter's `converter_stamp`, unless the backend is onnxruntime, which runs the .onnx itself."""
    p = Path(model)
    if not p.exists():
        raise GraphportError(f"model '{p}' does not exist.")
    if p.suffix.lower() != ".onnx" or backend == "onnxruntime":
        return p
    target = cache_dir() / "converted" / converter_stamp() / file_sha256(p)
    if model_json.is_output_folder(target):
        return target
    from graphport.conversion.pipeline import convert

    log(f"converting {p.name} (cached in {target})")
    with staging_dir(target) as tmp:
        report = convert(p, tmp / "out")
        if not report.ok:
            raise GraphportError(f"converting '{p}' failed verification against ONNX Runtime; run `graphport "
                                 "convert` for the details.")
        publish_dir(tmp / "out", target)  # False: another run cached it first, which is as good
    return target


def model_fingerprint(model_path: Path) -> str:
    """One sha256 over the model's files: the manifest's proof that a resumed run uses the same model."""
    files = sorted(f for f in model_path.rglob("*") if f.is_file()) if model_path.is_dir() else [model_path]
    return files_sha256(files)


def files_sha256(files: list[Path]) -> str:
    """One sha256 over the sha256s of `files`, in the order given."""
    return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()


def check_model_input(session, patch_size: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The input name and a reshape from [B, patch, 96] to what the model takes ([B,T,96] or [B,1,T,96])."""
    if len(session.inputs) != 1:
        raise GraphportError(f"predict feeds one mel input; the model has {len(session.inputs)}: "
                             f"{[i.name for i in session.inputs]}.")
    spec = session.inputs[0]
    shape = list(spec.shape) if spec.shape is not None else None
    want = [patch_size, N_BANDS]
    fixed = [d if isinstance(d, int) else None for d in (shape or [])]
    if shape is not None and len(shape) == 3 and all(d in (None, w) for d, w in zip(fixed[1:], want)):
        return spec.name, lambda x: x
    if shape is not None and len(shape) == 4 and fixed[1] in (None, 1) and all(
            d in (None, w) for d, w in zip(fixed[2:], want)):
        return spec.name, lambda x: x[:, None]
    if spec.dtype != "float32":
        raise GraphportError(f"input '{spec.name}' is {spec.dtype}; the mel front end makes float32.")
    shown = ["?" if d is None else d for d in fixed] if shape is not None else "unknown"
    raise GraphportError(f"model input '{spec.name}' has shape {shown}, but the front end makes patches of shape "
                         f"[batch, {patch_size}, {N_BANDS}] (TensorflowInputMusiCNN: {N_BANDS} mel bands, "
                         f"--patch-size {patch_size} frames), also accepted as [batch, 1, {patch_size}, {N_BANDS}].")


def pick_outputs(session, wanted: list[str] | None) -> list[str]:
    """The outputs to keep (`--outputs`), all by default; an unknown name is a user error listing the real ones."""
    names = [o.name for o in session.outputs]
    if not wanted:
        return names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise GraphportError(f"unknown output(s) {unknown}; the model has {names}.")
    return wanted
