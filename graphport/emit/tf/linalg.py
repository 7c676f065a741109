"""MatMul and Gemm; Gemm with a vector bias becomes MatMul + BiasAdd, which TF fuses at run time."""

from __future__ import annotations

import tensorflow as tf

from graphport.emit.tf.context import EmitContext
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node


@op("MatMul")
def matmul(ctx: EmitContext, node: Node) -> None:
    a, b = (ctx.onnx_order(i) for i in node.inputs)
    squeeze = []
    if a.shape.rank == 1:
        a, squeeze = tf.expand_dims(a, 0), squeeze + [-2]
    if b.shape.rank == 1:
        b, squeeze = tf.expand_dims(b, -1), squeeze + [-1]
    if a.shape.rank == 2 and b.shape.rank == 2:
        y = tf.raw_ops.MatMul(a=a, b=b)
    else:
        y = tf.raw_ops.BatchMatMulV2(x=a, y=b)
    ctx.set(node.outputs[0], tf.squeeze(y, squeeze) if squeeze else y)


@op("Gemm")
def gemm(ctx: EmitContext, node: Node) -> None:
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    a = ctx.onnx_order(node.inputs[0])
    b_const = ctx.const(node.inputs[1])
    trans_b = bool(node.attrs.get("transB", 0))
    if b_const is not None and b_const.dtype != object:
        b = tf.constant((b_const * alpha).astype(b_const.dtype) if alpha != 1.0 else b_const)
        alpha = 1.0
    else:
        b = ctx.onnx_order(node.inputs[1])
    y = tf.raw_ops.MatMul(a=a, b=b, transpose_a=bool(node.attrs.get("transA", 0)), transpose_b=trans_b)
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


