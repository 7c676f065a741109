"""graphport: ONNX -> flat TensorFlow graphs with a dynamic batch that every TF C API host loads at once."""

__version__ = "0.1.0"

from graphport.convert import ConversionReport, convert
from graphport.errors import GraphportError, InvalidModel, UnsupportedModel

__all__ = ["ConversionReport", "GraphportError", "InvalidModel", "UnsupportedModel", "__version__", "convert"]
