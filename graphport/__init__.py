"""graphport: ONNX -> flat TensorFlow graphs with a dynamic batch that every TF C API host loads at once.

Importing the package does not import TensorFlow (seconds): `graphport --help` and usage errors must answer at
once, and the CLI sets TF's logging environment before TF loads. So the public names below are resolved lazily
(PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphport.core.version import __version__

_LAZY = {"convert": "graphport.conversion.pipeline", "from_torch": "graphport.conversion.from_torch", "ConversionReport": "graphport.conversion.pipeline", "GraphportError": "graphport.core.errors",
         "InvalidModel": "graphport.core.errors", "UnsupportedModel": "graphport.core.errors"}

if TYPE_CHECKING:
    from graphport.conversion.from_torch import from_torch
    from graphport.conversion.pipeline import ConversionReport, convert
    from graphport.core.errors import GraphportError, InvalidModel, UnsupportedModel

__all__ = ["ConversionReport", "GraphportError", "InvalidModel", "UnsupportedModel", "__version__", "convert", "from_torch"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graphport' has no attribute {name!r}")
