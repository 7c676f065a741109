"""Errors that reach the user as one clear paragraph, never as a traceback.

Every error a user can cause or meet is a `GraphportError`, so the CLI's handler (graphport/cli/__init__.py) turns
it into its `exit_code`: 2 for a user error (bad input, refused path, missing extra, unusable environment), 1 for a
verification or run failure. Anything else that escapes a command is a graphport bug, reported as an internal error.
"""

from __future__ import annotations

import importlib.util


class GraphportError(Exception):
    """A user-facing error: bad input, unsupported model, refused output path."""

    exit_code = 2


class InvalidModel(GraphportError):
    """The file is not a loadable, valid ONNX model."""


class UnsupportedModel(GraphportError):
    """The model is valid ONNX but uses ops or attribute values graphport cannot convert exactly.

    `items` lists (op_type, node_name, opset, reason) for every offending node, so the user sees all of them at once.
    """

    def __init__(self, items: list[tuple[str, str, int, str]]):
        self.items = items
        lines = [f"  - {op} (node '{name}', opset {opset}): {why}" for op, name, opset, why in items]
        super().__init__(f"graphport cannot convert {len(items)} node(s) of this model:\n" + "\n".join(lines))


class DoctorError(GraphportError):
    """A TF model (.pb or SavedModel) that graphport cannot read, or doctor cannot repair; the message names the op or file and why."""


class VerificationFailed(DoctorError):
    """The fixed model differs from the original; nothing was written (exit 1, like convert)."""

    exit_code = 1


class OutputExists(GraphportError):
    """The output directory exists and --force was not given."""


class RunFailed(GraphportError):
    """TensorFlow refused to load or run a model that passed our own checks: a run failure, not a user error."""

    exit_code = 1


class CAPIError(RunFailed):
    """A TF_Status from the TF C API (graphport.runtime.capi) that was not TF_OK, with TF's own message."""


class EssentiaUnavailable(GraphportError):
    """The Essentia venv could not be created (no python3.11, pip failed): the user has to fix the environment."""


class MissingExtra(GraphportError):
    """An optional dependency group is not installed; the message names the pip command that installs it."""


EXTRAS = {"audio": ("soundfile", "samplerate", "threadpoolctl", "pyarrow"), "report": ("matplotlib",), "ray": ("ray",),
          "torch": ("torch", "onnxscript"), "tflite": ("ai_edge_litert",)}


def require_extra(extra: str, needed_by: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtra unless every module of `extra` (or just `modules`) can be imported.

    Called before the import, so a missing optional package is one line naming the fix, not a ModuleNotFoundError
    from deep inside a command. `find_spec` only locates the top-level package: it does not import it.
    """
    missing = [m for m in (modules or EXTRAS[extra]) if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(f"{needed_by} needs the {extra} extra ({', '.join(missing)} not installed): "
                           f"pip install 'graphport[{extra}]'")
