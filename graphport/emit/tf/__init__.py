"""TF back end: one module per op family, all registered on import."""

from graphport.emit.tf import conv, elementwise, linalg, norm, pad, pool, recurrent, reduce, resize, tensor  # noqa: F401
from graphport.emit.tf.build import build_graph_def  # noqa: F401
