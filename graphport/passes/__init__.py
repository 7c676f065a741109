"""Graph-to-graph passes, run in a fixed order by `optimize`."""

from __future__ import annotations

from graphport.ir.graph import Graph
from graphport.passes.cleanup import eliminate_dead_code
from graphport.passes.control import control_flow_notes, fold_if, mark_implicit_inputs, unroll_loops
from graphport.passes.fold import fold_constants
from graphport.passes.fuse import fold_batchnorm_into_conv, fuse_pad_into_conv
from graphport.passes.groupnorm import group_norm_over_split_channels
from graphport.passes.shuffle import channel_shuffle_to_gather
from graphport.passes.specialise import fix_dims, fix_inputs

__all__ = ["fix_dims", "fix_inputs", "optimize"]


def optimize(graph: Graph) -> Graph:
    """Fold shapes and constants (inlining each `If` whose condition folds), note the control flow that is left
    (it runs as TF v1 control flow), drop dead code, then fuse BatchNorm and zero Pads into convolutions, turn
    channel shuffles into Gathers and exported GroupNorms into statistics over split channel groups."""
    graph = fold_constants(graph)
    folded = 1
    while folded:  # an inlined branch may decide a nested If or a Loop's trip count
        graph, folded = fold_if(graph)
        graph, unrolled = unroll_loops(graph)
        folded += unrolled
        if folded:
            graph = fold_constants(graph)
    mark_implicit_inputs(graph)
    graph.notes = control_flow_notes(graph)
    for step in (eliminate_dead_code, fold_batchnorm_into_conv, fuse_pad_into_conv, channel_shuffle_to_gather,
                 group_norm_over_split_channels, eliminate_dead_code):
        graph = step(graph)
    for name in graph.outputs:  # metadata lists output shapes: derived `Sym` dims (4*batch) are not names
        v = graph.values.get(name)
        if v is not None and v.shape is not None:
            v.shape = tuple(d if isinstance(d, (int, str)) or d is None else None for d in v.shape)
    return graph
