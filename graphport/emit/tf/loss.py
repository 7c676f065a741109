"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Exported training graphs and evaluation models that score against labels carry them. Both pick, for every sample
and position, the class its target names; targets equal to `ignore_index` count neither in the loss nor in the mean's
denominator (ONNX divides by the sum of the picked class weights, which is the count of targets kept when there are
no weights). The class axis is moved last so one batched gather picks the entries.
"""

from __future__ import annotations

import tensorflow as tf

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node


def _negative_log_likelihood(node: Node, log_prob: tf.Tensor, target: tf.Tensor, weight: tf.Tensor | None
                             ) -> tf.Tensor:
    """`log_prob` is [N, C, d1..dk] in ONNX order, `target` [N, d1..dk]."""
    rank = log_prob.shape.rank
    if rank is None or target.shape.rank != rank - 1:
        raise Decline("a loss whose target rank is not its input's rank - 1, or unknown")
    target = tf.cast(target, tf.int64)
    classes_last = tf.transpose(log_prob, [0, *range(2, rank), 1]) if rank > 2 else log_prob
    ignore = node.attrs.get("ignore_index")
    kept = tf.not_equal(target, ignore) if ignore is not None else None
    safe = tf.where(kept, target, tf.zeros_like(target)) if kept is not None else target
    picked = tf.gather(classes_last, safe[..., None], batch_dims=rank - 1)[..., 0]
    dtype = log_prob.dtype
    scale = tf.gather(weight, safe) if weight is not None else None
    if kept is not None:
        mask = tf.cast(kept, dtype)
        scale = mask if scale is None else scale * mask
    loss = -picked if scale is None else -picked * scale
    reduction = node.attrs.get("reduction", "mean")
    if reduction == "none":
        return loss
    total = tf.reduce_sum(loss)
    if reduction == "sum":
        return total
    if reduction != "mean":
        raise Decline(f"loss reduction '{reduction}'")
    count = tf.cast(tf.size(loss), dtype) if scale is None else tf.reduce_sum(scale)
    return total / count


def _weight(ctx: EmitContext, node: Node) -> tf.Tensor | None:
    name = opt_input(node, 2)
    return ctx.onnx_order(name) if name else None


@op("NegativeLogLikelihoodLoss", since=12)
def negative_log_likelihood_loss(ctx: EmitContext, node: Node) -> None:
    loss = _negative_log_likelihood(node, ctx.onnx_order(node.inputs[0]), ctx.onnx_order(node.inputs[1]),
                                    _weight(ctx, node))
    ctx.set(node.outputs[0], loss)


@op("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(ctx: EmitContext, node: Node) -> None:
    """NegativeLogLikelihoodLoss of the log-softmax over the class axis; the optional second output is that
    log-softmax itself."""
    log_prob = tf.nn.log_softmax(ctx.onnx_order(node.inputs[0]), axis=1)
    ctx.set(node.outputs[0], _negative_log_likelihood(node, log_prob, ctx.onnx_order(node.inputs[1]),
                                                      _weight(ctx, node)))
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.set(node.outputs[1], log_prob)
