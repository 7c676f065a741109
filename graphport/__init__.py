"""graphport: ONNX -> flat TensorFlow graphs with a dynamic batch that every TF C API host loads at once.

Importing the package does not import TensorFlow (seconds): `graphport --help` and usage errors must answer at
once, and the CLI sets TF's logging environment before TF loads. So the public names below are resolved lazily
(PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {"convert": "graphport.converter", "ConversionReport": "graphport.converter", "GraphportError": "graphport.errors",
         "InvalidModel": "graphport.errors", "UnsupportedModel": "graphport.errors"}

if TYPE_CHECKING:
    from graphport.converter import ConversionReport, convert
    from graphport.errors import GraphportError, InvalidModel, UnsupportedModel

__all__ = ["ConversionReport", "GraphportError", "InvalidModel", "UnsupportedModel", "__version__", "convert"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'graphport' has no attribute {name!r}")
