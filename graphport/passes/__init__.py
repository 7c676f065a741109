"""Graph-to-graph passes, run in a fixed order by `optimize`."""

from __future__ import annotations

from graphport.ir.graph import Graph
from graphport.passes.cleanup import eliminate_dead_code
from graphport.passes.fold import fold_constants
from graphport.passes.fuse import fold_batchnorm_into_conv, fuse_pad_into_conv


def optimize(graph: Graph) -> Graph:
    """Fold shapes and constants, drop dead code, then fuse BatchNorm and zero Pads into convolutions."""
    for step in (fold_constants, eliminate_dead_code, fold_batchnorm_into_conv, fuse_pad_into_conv,
                 eliminate_dead_code):
        graph = step(graph)
    for name in graph.outputs:  # metadata lists output shapes: derived `Sym` dims (4*batch) are not names
        v = graph.values.get(name)
        if v is not None and v.shape is not None:
            v.shape = tuple(d if isinstance(d, (int, str)) or d is None else None for d in v.shape)
    return graph
