"""graphport: ONNX -> flat TensorFlow graphs with a dynamic batch that every TF C API host loads at once."""

__version__ = "0.1.0"

from graphport.convert import ConversionReport, convert  # noqa: E402
from graphport.errors import GraphportError, InvalidModel, UnsupportedModel  # noqa: E402

__all__ = ["ConversionReport", "GraphportError", "InvalidModel", "UnsupportedModel", "convert", "__version__"]
