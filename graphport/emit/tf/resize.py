"""Resize and Upsample: nearest, linear and cubic, every coordinate transformation, constant or runtime sizes.

Each resized axis is a few Gathers and a weighted sum: one tap for nearest, two for linear, four for cubic, with
indices and weights from ONNX's own formulas. TF's resize kernels each implement one or two coordinate conventions
and none of ONNX's cubic variants (`cubic_coeff_a`, `exclude_outside`); this way every separable ONNX mode is matched
on any layout. The formulas are written once over an array namespace: numpy when the output size is known at
conversion time (indices and weights become constants), TF ops when it is not (sizes read from a `Shape`, scales fed
at run time, a symbolic height), so that a graph never has to fix a size the model leaves open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.emit.tf.tensor import ir_dim
from graphport.ir.graph import Node, canonical
from graphport.ir.symbolic import Sym

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_TAPS = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "cubic": 4, "bicubic": 4}


@dataclass(frozen=True)
class _Ops:
    """The array functions the coordinate formulas need, over numpy or TF."""

    arange: Callable
    floor: Callable
    ceil: Callable
    round: Callable
    where: Callable
    equal: Callable  # not `==`: a TF graph tensor compares by identity there
    clip: Callable
    index: Callable
    reduce_sum: Callable


NP = _Ops(lambda n: np.arange(n, dtype=np.float64), np.floor, np.ceil, np.round, np.where, np.equal, np.clip,
          lambda a: a.astype(np.int64), lambda parts: sum(parts))
TF = _Ops(lambda n: tf.range(tf.cast(n, tf.float64)), tf.floor, tf.math.ceil, tf.round, tf.where, tf.equal,
          lambda a, lo, hi: tf.clip_by_value(a, tf.cast(lo, a.dtype), tf.cast(hi, a.dtype)),
          lambda a: tf.cast(a, tf.int64), lambda parts: tf.add_n(parts))


def source_coords(xp: _Ops, mode: str, out: Any, size: Any, scale: Any):
    """ONNX's coordinate_transformation_mode: output index -> input coordinate, in float64."""
    x = xp.arange(out)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjust = out / (scale * size)
        return size / 2 * (1 - adjust) + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return xp.where(out > 1, (x + 0.5) / scale - 0.5, 0 * x)
    if mode == "align_corners":
        return xp.where(out > 1, x * (size - 1) / xp.where(out > 1, out - 1, 1), 0 * x)
    if mode == "asymmetric":
        return x / scale
    return (x + 0.5) / scale  # tf_half_pixel_for_nn


def taps(xp: _Ops, mode: str, coords, size: Any, attrs: dict) -> list[tuple[Any, Any]]:
    """(input indices, weights) per tap; weights None for nearest. Out-of-range neighbours repeat the edge, as
    ONNX's reference pads; cubic with `exclude_outside` zeroes them instead and renormalises."""
    if mode == "nearest":
        nearest = attrs["nearest_mode"]
        frac = coords - xp.floor(coords)
        if nearest == "round_prefer_floor":
            idx = xp.where(xp.equal(frac, 0.5), xp.floor(coords), xp.round(coords))
        elif nearest == "round_prefer_ceil":
            idx = xp.where(xp.equal(frac, 0.5), xp.ceil(coords), xp.round(coords))
        else:
            idx = xp.floor(coords) if nearest == "floor" else xp.ceil(coords)
        return [(xp.index(xp.clip(idx, 0, size - 1)), None)]
    lo = xp.floor(coords)
    t = coords - lo
    if _TAPS[mode] == 2:
        offsets, weights = (0, 1), [1 - t, t]
    else:
        a = attrs["cubic_coeff_a"]
        offsets = (-1, 0, 1, 2)
        weights = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                   ((a + 2) * t - (a + 3)) * t * t + 1,
                   ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                   ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]
        if attrs["exclude_outside"]:
            weights = [xp.where((lo + k < 0) | (lo + k > size - 1), 0 * w, w) for k, w in zip(offsets, weights)]
            total = xp.reduce_sum(weights)
            weights = [w / total for w in weights]
    return [(xp.index(xp.clip(lo + k, 0, size - 1)), w) for k, w in zip(offsets, weights)]


Targets = tuple[Any, Any, list[int] | None]  # scales, sizes (numpy arrays or runtime tensors), axes


@dataclass
class _Axis:
    """One resized ONNX axis: output size and scale, ints/floats when known now, else float64/int64 tensors."""

    axis: int
    out: Any
    size: Any
    scale: Any

    @property
    def static(self) -> bool:
        return not any(isinstance(v, tf.Tensor) for v in (self.out, self.size, self.scale))


def _plan(ctx: EmitContext, node: Node, x: tf.Tensor, perm: tuple, targets: Targets) -> list[_Axis]:
    """The axes that change size, from scales or sizes; symbolic or runtime values become TF scalars."""
    rank = x.shape.rank
    scales, sizes, axes = targets
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    shape = [x.shape[perm.index(a)] for a in range(rank)]
    ir_shape = (ctx.graph.values[node.inputs[0]].shape if node.inputs[0] in ctx.graph.values else None) or \
        [None] * rank
    runtime_shape = None
    plan = []
    for i, a in enumerate(axes):
        size = shape[a] if shape[a] is not None else ir_dim(ctx, node.inputs[0], a)
        if isinstance(size, Sym):  # computed from the graph input's one Shape read
            size = tf.cast(ctx.sym_value(size), tf.float64)
        elif size is None:
            runtime_shape = tf.shape(x, out_type=tf.int64) if runtime_shape is None else runtime_shape
            size = tf.cast(runtime_shape[perm.index(a)], tf.float64)
        if sizes is not None and isinstance(sizes[i], tuple):
            plan.append(_Axis(a, *sizes[i][:1], size, sizes[i][1]))
        elif sizes is not None:
            target = sizes[i]
            if isinstance(target, Sym) and ir_shape[a] is not None and canonical(ctx.graph, target) == ir_shape[a]:
                continue  # e.g. sizes = [batch, C, 2H, 2W] from Shape(x): the batch axis is kept
            out = tf.cast(ctx.sym_value(target), tf.float64) if isinstance(target, Sym) else \
                target if isinstance(target, tf.Tensor) else int(target)
            if isinstance(out, int) and isinstance(size, int) and out == size:
                continue
            plan.append(_Axis(a, out, size, out / size))
        else:
            s = scales[i]
            if not isinstance(s, tf.Tensor) and float(s) == 1.0:
                continue
            s = s if isinstance(s, tf.Tensor) else float(s)
            out = np.floor(size * s) if not isinstance(size * s, tf.Tensor) else tf.floor(size * s)
            plan.append(_Axis(a, int(out) if not isinstance(out, tf.Tensor) else out, size, s))
    return plan


def _scales(values: object) -> Targets:
    return [float(s) for s in np.asarray(values).ravel()], None, None


def _runtime_vector(ctx: EmitContext, name: str, rank: int, axes: list[int] | None) -> list:
    """A scales or sizes input as one value per listed axis: numbers or `Sym`s when folded, else TF scalars."""
    arr = ctx.const(name)
    if arr is not None:
        return list(arr.ravel())
    t = tf.cast(ctx.onnx_order(name), tf.float64)
    return [t[i] for i in range(len(axes) if axes is not None else rank)]


def _scales_or_sizes(ctx: EmitContext, node: Node, axes: list[int] | None = None) -> Targets:
    """Resize-11 on: scales (input 2, possibly empty) or else sizes (input 3), each constant or fed at run time."""
    scales_in, sizes_in = opt_input(node, 2), opt_input(node, 3)
    rank = ctx.rank(node.inputs[0])
    empty = scales_in and ctx.const(scales_in) is not None and ctx.const(scales_in).size == 0
    if scales_in and not empty and (not sizes_in or ctx.raw(scales_in).shape.num_elements() != 0):
        return _runtime_vector(ctx, scales_in, rank, axes), None, axes
    if sizes_in:
        return None, _runtime_vector(ctx, sizes_in, rank, axes), axes
    raise Decline("Resize without scales or sizes")


@op("Upsample", since=7)
def upsample_7(ctx: EmitContext, node: Node) -> None:
    """Upsample-7: scales is an attribute; nearest picks floor(asymmetric coordinate)."""
    _resize(ctx, node, "asymmetric", lambda: _scales(node.attrs["scales"]))


@op("Upsample", since=9)
@op("Resize", since=10)
def upsample(ctx: EmitContext, node: Node) -> None:
    """Upsample-9 and Resize-10: scales is input 1, with Upsample's coordinates."""
    _resize(ctx, node, "asymmetric",
            lambda: (_runtime_vector(ctx, node.inputs[1], ctx.rank(node.inputs[0]), None), None, None))


@op("Resize", since=11)
def resize(ctx: EmitContext, node: Node) -> None:
    """Resize-11 on: roi, scales, sizes inputs; coordinate_transformation_mode, nearest_mode, cubic_coeff_a and
    exclude_outside."""
    _resize(ctx, node, node.attrs["coordinate_transformation_mode"], lambda: _scales_or_sizes(ctx, node))


@op("Resize", since=18)
def resize_18(ctx: EmitContext, node: Node) -> None:
    """Resize-18 on adds axes, antialias and keep_aspect_ratio_policy."""
    def targets() -> Targets:
        scales, sizes, axes = _scales_or_sizes(ctx, node, node.attrs.get("axes"))
        policy = node.attrs["keep_aspect_ratio_policy"]
        if sizes is not None and policy != "stretch":
            sizes = _keep_aspect_ratio(ctx, node, sizes, axes, policy)
        return scales, sizes, axes

    _resize(ctx, node, node.attrs["coordinate_transformation_mode"], targets,
            antialias=bool(node.attrs["antialias"]))


def _keep_aspect_ratio(ctx: EmitContext, node: Node, sizes: list, axes: list[int] | None, policy: str) -> list:
    """Resize-18's not_larger/not_smaller: one scale for all listed axes (the smallest or largest of size/input),
    sizes rounded half up; returned as (size, scale) pairs that `_plan` takes as they are."""
    shape = ctx.shape_ints(node.inputs[0])
    axes = list(range(len(shape))) if axes is None else [int(a) % len(shape) for a in axes]
    if any(isinstance(v, Sym) for v in sizes) or any(shape[a] is None for a in axes):
        raise Decline(f"keep_aspect_ratio_policy '{policy}' with symbolic sizes or input dims")
    if not any(isinstance(v, tf.Tensor) for v in sizes):
        ratios = [int(v) / shape[a] for v, a in zip(sizes, axes)]
        scale = min(ratios) if policy == "not_larger" else max(ratios)
        return [(int(scale * shape[a] + 0.5), scale) for a in axes]
    ratios = tf.stack([tf.cast(v, tf.float64) / shape[a] for v, a in zip(sizes, axes)])
    scale = tf.reduce_min(ratios) if policy == "not_larger" else tf.reduce_max(ratios)
    return [(tf.floor(scale * shape[a] + 0.5), scale) for a in axes]


def _resize(ctx: EmitContext, node: Node, coord: str, targets: Callable[[], Targets], antialias: bool = False) -> None:
    name = node.inputs[0]
    attrs = {"nearest_mode": "floor", "cubic_coeff_a": -0.75, "exclude_outside": 0, **node.attrs}
    mode = attrs["mode"]
    if mode not in _TAPS:
        raise Decline(f"Resize mode '{mode}' (supported: {', '.join(_TAPS)})")
    if antialias:
        raise Decline("Resize with antialias=1")
    if coord not in _COORD_MODES:
        raise Decline(f"Resize coordinate_transformation_mode '{coord}' (supported: {', '.join(_COORD_MODES)})")
    if mode == "nearest" and attrs["nearest_mode"] not in _NEAREST:
        raise Decline(f"Resize nearest_mode '{attrs['nearest_mode']}'")
    x = ctx.raw(name)
    perm = ctx.perm(name) or tuple(range(x.shape.rank))
    dt = x.dtype.as_numpy_dtype
    for ax in _plan(ctx, node, x, perm, targets()):
        xp = NP if ax.static else TF
        axis = perm.index(ax.axis)
        bshape = [1] * axis + [-1] + [1] * (x.shape.rank - axis - 1)
        parts = []
        for idx, w in taps(xp, mode, source_coords(xp, coord, ax.out, ax.size, ax.scale), ax.size, attrs):
            g = tf.gather(x, tf.constant(idx) if ax.static else idx, axis=axis)
            if w is not None:
                w = tf.constant(w.reshape(bshape).astype(dt)) if ax.static else tf.reshape(tf.cast(w, x.dtype), bshape)
                g = g * w
            parts.append(g)
        x = tf.add_n(parts) if len(parts) > 1 else parts[0]
    ctx.set(node.outputs[0], x, ctx.perm(name))
