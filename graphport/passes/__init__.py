"""passes: Graph -> PassResult rewrites of the IR, run as one list by `optimize`: folding (constants, symbolic
shape arithmetic, control flow that folds), dead-code elimination, fusions, and the bodies of the control flow
that stays. A pass never emits TF and never reads ONNX protobufs (`specialise` edits the ONNX model before it is
lifted). With GRAPHPORT_LINT=1 (the test suite sets it) `Graph.lint()` checks the graph after every pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from graphport.ir.graph import Graph, LintError, PassResult
from graphport.passes.bodies import fold_bodies
from graphport.passes.cleanup import eliminate_dead_code
from graphport.passes.control import fold_with_control_flow, mark_implicit_inputs, note_control_flow
from graphport.passes.fuse import fold_batchnorm_into_conv, fold_channel_affine_into_conv, fuse_pad_into_conv
from graphport.passes.groupnorm import group_norm_over_split_channels
from graphport.passes.shuffle import channel_shuffle_to_gather
from graphport.passes.specialise import fix_dims, fix_inputs

__all__ = ["PIPELINE", "fix_dims", "fix_inputs", "optimize"]

Pass = Callable[[Graph], PassResult]


def plain_output_dims(graph: Graph) -> PassResult:
    """Output shapes keep ints, input symbols and unknowns only: `model.json` lists them, and a derived `Sym`
    (4*batch) is no name a host can read."""
    modified = False
    for name in graph.outputs:
        v = graph.values.get(name)
        if v is not None and v.shape is not None:
            plain = tuple(d if isinstance(d, (int, str)) or d is None else None for d in v.shape)
            modified = modified or plain != v.shape
            v.shape = plain
    return PassResult(graph, modified)


# Fold shapes and constants (inlining each `If` whose condition folds), note the control flow that is left (it
# runs as TF v1 control flow), drop dead code, fuse BatchNorm, per-channel Mul/Add and zero Pads into
# convolutions, turn channel shuffles into Gathers and exported GroupNorms into statistics over split channel
# groups, then fold the bodies of the control flow left.
PIPELINE: list[Pass] = [fold_with_control_flow, mark_implicit_inputs, note_control_flow, eliminate_dead_code,
                        fold_batchnorm_into_conv, fold_channel_affine_into_conv, fuse_pad_into_conv,
                        channel_shuffle_to_gather, group_norm_over_split_channels, eliminate_dead_code, plain_output_dims, fold_bodies]


def optimize(graph: Graph, lint: bool | None = None) -> Graph:
    """Run `PIPELINE`; `lint` (default: GRAPHPORT_LINT=1) checks the graph after every pass."""
    lint = os.environ.get("GRAPHPORT_LINT") == "1" if lint is None else lint
    for step in PIPELINE:
        graph = step(graph).graph
        if lint:
            try:
                graph.lint()
            except LintError as e:
                raise LintError(f"after pass {step.__name__}: {e}") from e
    return graph
