"""TF back end: one module per op family, all registered on import."""

from graphport.emit.tf import (  # noqa: F401
    attention,
    control_flow,
    conv,
    detection,
    elementwise,
    indexing,
    linalg,
    loss,
    norm,
    pad,
    pool,
    quant,
    rearrange,
    recurrent,
    reduce,
    reshape,
    resize,
    signal,
    tensor,
    vision,
)
from graphport.emit.tf.build import build_graph_def  # noqa: F401
