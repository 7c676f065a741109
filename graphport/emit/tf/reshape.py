"""Reshape and Flatten, in the input's own layout when that saves a Transpose.

A reshape needs the ONNX memory order, so a channels-last input used to be restored (one Transpose) first. But a
reshape that only merges or splits neighbouring axes can run on the stored tensor directly when each merged group
lies in order in the stored layout: the result is the ONNX output in a permuted layout, which later ops take as it
is. That is the patch embedding of every vision and audio transformer (conv -> flatten(2) -> transpose(1, 2):
NHWC [N, H, W, C] reshapes straight to [N, H*W, C]) and its inverse before a conv (tokens -> transpose(1, 2) ->
reshape(N, C, H, W): [N, H*W, C] is already NHWC); both used to cost two Transposes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, Perm
from graphport.emit.tf.registry import op
from graphport.emit.tf.tensor import ir_dim, shape_operand, shape_vector
from graphport.ir.graph import Dim, Node

Group = tuple[list[int], list[int]]  # input axes -> output axes of one merge, split or identity


def reshape_groups(in_dims: list, out_dims: list) -> list[Group] | None:
    """The reshape `in_dims` -> `out_dims` as groups of neighbouring axes, each merged into one output axis or split
    from one input axis (size-1 axes belong to none); None if some group does both, or a dim is unknown. A named
    dim must map to itself."""
    in_dims, out_dims = [_token(d) for d in in_dims], [_token(d) for d in out_dims]
    if None in in_dims or None in out_dims:
        return None
    ins = [a for a, d in enumerate(in_dims) if d != 1]
    outs = [b for b, d in enumerate(out_dims) if d != 1]
    groups: list[Group] = []
    i = j = 0
    while i < len(ins) and j < len(outs):
        a, b = in_dims[ins[i]], out_dims[outs[j]]
        group: Group = ([ins[i]], [outs[j]])
        i, j = i + 1, j + 1
        if (isinstance(a, str) or isinstance(b, str)) and a != b:  # a named dim maps to itself only
            return None
        while a != b:  # sizes: take the next axis on the side whose product is short
            if a < b:
                if i == len(ins) or isinstance(in_dims[ins[i]], str):
                    return None
                group[0].append(ins[i])
                a, i = a * in_dims[ins[i]], i + 1
            else:
                if j == len(outs) or isinstance(out_dims[outs[j]], str):
                    return None
                group[1].append(outs[j])
                b, j = b * out_dims[outs[j]], j + 1
        if len(group[0]) > 1 and len(group[1]) > 1:
            return None
        groups.append(group)
    return groups if i == len(ins) and j == len(outs) else None


def _token(d: object) -> Dim:
    """An IR dim for comparison: ints as ints, a named or computed symbolic dim (str or `Sym`) by its text."""
    if d is None or isinstance(d, int | np.integer):
        return None if d is None else int(d)
    return str(d)


def layout_after_reshape(perm: tuple[int, ...], in_dims: list, out_dims: list) -> Perm:
    """The layout in which reshaping a tensor stored as `perm` gives the ONNX output of `in_dims` -> `out_dims`,
    or None when that needs the ONNX order first (a merged group out of order in `perm`)."""
    in_dims, out_dims = [_token(d) for d in in_dims], [_token(d) for d in out_dims]
    groups = reshape_groups(in_dims, out_dims)
    if groups is None:
        return None
    stored = [a for a in perm if in_dims[a] != 1]
    pos = {a: k for k, a in enumerate(stored)}
    for axes, _ in groups:
        if [pos[a] for a in axes] != list(range(pos[axes[0]], pos[axes[0]] + len(axes))):
            return None
    out = [b for _, bs in sorted(groups, key=lambda g: pos[g[0][0]]) for b in bs]
    for b in (b for b, d in enumerate(out_dims) if d == 1):  # size-1 axes: next to their ONNX neighbours
        out.insert(next((k for k, c in enumerate(out) if c > b), len(out)), b)
    return tuple(out)


def _reshape_in_layout(ctx: EmitContext, src: str, dst: str) -> bool:
    """Emit `dst` as a reshape of `src` in `src`'s stored layout, when that layout allows it and saves a Transpose."""
    perm = ctx.perm(src)
    values = ctx.graph.values
    if perm is None or src not in values or dst not in values or values[src].shape is None or values[dst].shape is None:
        return False
    in_dims, out_dims = list(values[src].shape), list(values[dst].shape)
    if len(in_dims) != len(perm):
        return False
    out_perm = layout_after_reshape(perm, in_dims, out_dims)
    if out_perm is None:
        return False
    dims = [ir_dim(ctx, dst, b) for b in out_perm]
    if None in dims:
        return False
    y = tf.reshape(ctx.raw(src), shape_vector(ctx, dims))
    y.set_shape([d if isinstance(d, int) else None for d in (_token(out_dims[b]) for b in out_perm)])
    ctx.set(dst, y, out_perm)
    return True


def _target_agrees(ctx: EmitContext, node: Node) -> bool:
    """Whether the Reshape's target is known at conversion time and agrees with the IR's output shape, on which
    `_reshape_in_layout` relies (a runtime target is left to TF)."""
    target = ctx.const(node.inputs[1])
    out = ctx.graph.values.get(node.outputs[0])
    if target is None or out is None or out.shape is None or target.size != len(out.shape):
        return False
    return all(not isinstance(t, int | np.integer) or t <= 0 or not isinstance(d, int) or t == d
               for t, d in zip(target.ravel().tolist(), out.shape, strict=True))


@op("Reshape")
def reshape(ctx: EmitContext, node: Node) -> None:
    if _target_agrees(ctx, node) and _reshape_in_layout(ctx, node.inputs[0], node.outputs[0]):
        return
    x = ctx.onnx_order(node.inputs[0])
    allow_zero = bool(node.attrs.get("allowzero"))  # an attribute from Reshape-14 on
    target = shape_operand(ctx, node.inputs[1], x, allow_zero, src=node.inputs[0])
    y = tf.reshape(x, target)
    known = ctx.graph.values[node.outputs[0]].shape if node.outputs[0] in ctx.graph.values else None
    if known is not None and len(known) == y.shape.rank:  # a runtime target hides dims the IR has folded
        y.set_shape([d if isinstance(d, int) else None for d in known])
    ctx.set(node.outputs[0], y)


@op("Flatten")
def flatten(ctx: EmitContext, node: Node) -> None:
    if _reshape_in_layout(ctx, node.inputs[0], node.outputs[0]):
        return
    x = ctx.onnx_order(node.inputs[0])
    dims = x.shape.as_list()
    axis = node.attrs["axis"]
    axis = axis + len(dims) if axis < 0 else axis  # axis is in [-r, r]; -1 splits off the last axis
    head, tail = dims[:axis], dims[axis:]
    if None not in tail:
        target = [-1, int(np.prod(tail))]
    elif None not in head:
        target = [int(np.prod(head)), -1]
    else:
        dyn = tf.shape(x)
        target = tf.stack([tf.reduce_prod(dyn[:axis]), tf.reduce_prod(dyn[axis:])])
    ctx.set(node.outputs[0], tf.reshape(x, target))
