"""One gate for TF models from elsewhere: list the ops that touch files or the network or run code, and refuse.

A SavedModel or GraphDef runs whatever ops it holds as soon as a host calls it, so `doctor --fix/--measure` and
`bench` parse the protobufs (nothing is loaded into TF, nothing runs) and stop unless the user passes --trust.
"""

from __future__ import annotations

from pathlib import Path

from graphport.core.errors import DoctorError
from graphport.runtime.tf_model import load, untrusted_ops


class UntrustedModel(DoctorError):
    """The model holds file, network or code ops and --trust was not given; nothing was loaded or run."""


def tf_artifacts(path: Path) -> list[Path]:
    """The TF models behind a bench/doctor path: a .pb, a SavedModel dir, or both inside a graphport output."""
    if path.suffix == ".onnx":
        return []
    if path.is_dir() and not (path / "saved_model.pb").exists():
        return [p for p in (path / "model.pb", path / "saved_model") if p.exists()]
    return [path]


def risky_ops(path: str | Path) -> list[tuple[str, str]]:
    """(op, node) of every untrusted op in the TF models behind `path`, read from the protobufs alone."""
    return [r for p in tf_artifacts(Path(path)) for r in untrusted_ops(load(p))]


def refuse_untrusted(risky: list[tuple[str, str]], what: str = "loaded or run") -> None:
    if risky:
        listing = ", ".join(f"{op} ('{name}')" for op, name in risky[:8])
        more = f" and {len(risky) - 8} more" if len(risky) > 8 else ""
        raise UntrustedModel(f"the model contains ops that touch files or run code: {listing}{more}. Nothing was "
                             f"{what}; pass --trust to go on.")


def require_trust(path: str | Path, trust: bool) -> None:
    """Raise UntrustedModel (exit 2) for a model with untrusted ops, unless `trust`."""
    if not trust:
        refuse_untrusted(risky_ops(path))
