"""MatMul and Gemm; Gemm with a vector bias becomes MatMul + BiasAdd, which TF fuses at run time."""

from __future__ import annotations

import tensorflow as tf

from graphport.emit.tf.context import EmitContext
from graphport.emit.tf.registry import op
from graphport.emit.tf.tensor import ir_dim, shape_vector
from graphport.ir.graph import Node


@op("MatMul")
def matmul(ctx: EmitContext, node: Node) -> None:
    """Batch dims that broadcast never reach BatchMatMulV2: oneDNN's kernel corrupts the heap when operand ranks
    differ (docs/onednn.md). A weight without batch dims makes the common case a 2-D MatMul over flattened rows."""
    a, b = (ctx.onnx_order(i) for i in node.inputs)
    squeeze = []
    if a.shape.rank == 1:
        a, squeeze = tf.expand_dims(a, 0), squeeze + [-2]
    if b.shape.rank == 1:
        b, squeeze = tf.expand_dims(b, -1), squeeze + [-1]
    a_batch, b_batch = _batch_dims(ctx, node.inputs[0], a), _batch_dims(ctx, node.inputs[1], b)
    if all(d == 1 for d in b_batch):
        y = _rows_times_matrix(ctx, node, a, tf.reshape(b, _dims(b, -2)) if b_batch else b, bool(squeeze))
    elif a_batch == b_batch and None not in a_batch:
        y = tf.raw_ops.BatchMatMulV2(x=a, y=b)
    else:
        a, b = _broadcast_batch(a, b)
        y = tf.raw_ops.BatchMatMulV2(x=a, y=b)
    ctx.set(node.outputs[0], tf.squeeze(y, squeeze) if squeeze else y)


def _rows_times_matrix(ctx: EmitContext, node: Node, a: tf.Tensor, b: tf.Tensor, squeezed: bool) -> tf.Tensor:
    """[..., M, K] x [K, N] as one MatMul on [rows, K], reshaped back with the IR's (symbolic) output shape."""
    if a.shape.rank == 2:
        return tf.raw_ops.MatMul(a=a, b=b)
    y = tf.raw_ops.MatMul(a=tf.reshape(a, [-1, *_dims(a, -1)]), b=b)
    known = None if squeezed else ctx.graph.values[node.outputs[0]].shape
    if known is not None and None not in known and len(known) == a.shape.rank:
        dims = [ir_dim(ctx, node.outputs[0], i) for i in range(len(known))]
        if None not in dims:
            return tf.reshape(y, shape_vector(ctx, dims))
    return tf.reshape(y, tf.concat([tf.shape(a)[:-1], tf.shape(b)[-1:]], 0))


def _batch_dims(ctx: EmitContext, name: str, t: tf.Tensor) -> list[int | str | None]:
    """Leading dims of `t` (an operand of rank >= 2), with the IR's symbol names where TF only knows None."""
    ir = ctx.graph.values[name].shape if name in ctx.graph.values else None
    static = t.shape.as_list()[:-2]
    if ir is None or len(ir) != t.shape.rank:
        return static
    return [d if d is not None else ir[i] for i, d in enumerate(static)]


def _broadcast_batch(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Both operands at the same rank with equal batch dims, so BatchMatMulV2 has nothing left to broadcast."""
    rank = max(a.shape.rank, b.shape.rank)
    a = tf.reshape(a, [1] * (rank - a.shape.rank) + _dims(a)) if a.shape.rank < rank else a
    b = tf.reshape(b, [1] * (rank - b.shape.rank) + _dims(b)) if b.shape.rank < rank else b
    batch = tf.broadcast_dynamic_shape(tf.shape(a)[:-2], tf.shape(b)[:-2])
    return (tf.broadcast_to(a, tf.concat([batch, tf.shape(a)[-2:]], 0)),
            tf.broadcast_to(b, tf.concat([batch, tf.shape(b)[-2:]], 0)))


def _dims(t: tf.Tensor, start: int = 0) -> list:
    """`t`'s dims from `start` on as Reshape wants them: static ints, and a runtime scalar (one Shape) only for a
    dim TF does not know, so the usual case (known K and N) reads nothing at run time."""
    dims = t.shape.as_list()[start:]
    if None not in dims:
        return dims
    shape = tf.shape(t)
    return [d if d is not None else shape[start + i if start >= 0 else len(t.shape) + start + i]
            for i, d in enumerate(dims)]


@op("Gemm")
def gemm(ctx: EmitContext, node: Node) -> None:
    alpha, beta = node.attrs["alpha"], node.attrs["beta"]
    a = ctx.onnx_order(node.inputs[0])
    b_const = ctx.const(node.inputs[1])
    trans_b = bool(node.attrs["transB"])
    if b_const is not None and b_const.dtype != object:
        b = tf.constant((b_const * alpha).astype(b_const.dtype) if alpha != 1.0 else b_const)
        alpha = 1.0
    else:
        b = ctx.onnx_order(node.inputs[1])
    y = tf.raw_ops.MatMul(a=a, b=b, transpose_a=bool(node.attrs["transA"]), transpose_b=trans_b)
    if alpha != 1.0:
        y = y * tf.constant(alpha, y.dtype)
    c_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if c_name and beta != 0.0:
        c = ctx.const(c_name)
        if c is not None and c.dtype != object and c.ndim <= 1 and c.size > 1:
            y = tf.nn.bias_add(y, tf.constant((c * beta).astype(c.dtype)))
        elif c is not None and c.dtype != object:
            y = y + tf.constant((c * beta).astype(c.dtype))
        else:
            y = y + ctx.onnx_order(c_name) * tf.constant(beta, y.dtype)
    ctx.set(node.outputs[0], y)




@op("Det", since=11)
def det(ctx: EmitContext, node: Node) -> None:
    ctx.set(node.outputs[0], tf.linalg.det(ctx.onnx_order(node.inputs[0])))


@op("Einsum", since=12)
def einsum(ctx: EmitContext, node: Node) -> None:
    """TF's Einsum op takes ONNX's equation syntax (explicit `->` or implicit output, `...` broadcasting)."""
    ctx.set(node.outputs[0], tf.einsum(node.attrs["equation"].replace(" ", ""),
                                       *[ctx.onnx_order(i) for i in node.inputs]))
