"""Detection ops: RoiAlign, MaxRoiPool and NonMaxSuppression.

The ROI poolers gather every sample of every bin of every ROI from the channels-last input flattened to rows, then
average or take the max. TF's CropAndResize samples one point per output cell with its own coordinate convention
(no bins, no sampling_ratio, no ONNX max mode), so it is not used. A ROI's samples per bin can depend on its size
(sampling_ratio 0, MaxRoiPool's rounded windows); the sample axes are then as long as the largest ROI needs, at
run time, and the samples beyond a ROI's own count are masked out.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.emit.tf.spatial import lowest
from graphport.emit.tf.vision import dims_vector, spatial_rows
from graphport.ir.graph import Node


def _div(x: tf.Tensor, n: int | tf.Tensor) -> tf.Tensor:
    """x / n as float32 division rounds it. Grappler turns a division by a constant into a multiplication by the
    reciprocal, which can land an ulp off and move a floor or ceil (a window's end, a ROI's sample count); done in
    float64 and rounded once, it is float32's own quotient."""
    if x.dtype != tf.float32:
        return x / tf.cast(n, x.dtype)
    return tf.cast(tf.cast(x, tf.float64) / tf.cast(n, tf.float64), tf.float32)


def _samples(count: int | tf.Tensor) -> tf.Tensor:
    """0..G-1 as a [1, 1, G] row: G a fixed count, or the largest of the per-ROI counts (at least 1)."""
    if isinstance(count, int):
        return tf.constant(np.arange(count).reshape(1, 1, -1), tf.int64)
    return tf.reshape(tf.range(tf.maximum(tf.reduce_max(count), tf.constant(1, tf.int64))), [1, 1, -1])


def _align_axis(start: tf.Tensor, bin_size: tf.Tensor, grid: int | tf.Tensor, pooled: int, size: int):
    """One axis of RoiAlign's bilinear samples: [R, pooled, G] low/high indices, their weights, whether the sample
    lies within [-1, size] (else it reads zero), and whether it is one of the ROI's own `grid` samples."""
    dt = start.dtype
    i = _samples(grid)
    g = grid if isinstance(grid, int) else grid[:, None, None]
    p = tf.constant(np.arange(pooled).reshape(1, -1, 1), dt)
    s, b = start[:, None, None], bin_size[:, None, None]
    c = s + p * b + _div((tf.cast(i, dt) + 0.5) * b, g)  # ONNX Runtime's order of operations
    inside = (c >= -1) & (c <= size)
    c = tf.maximum(c, tf.zeros_like(c))
    edge = tf.floor(c) >= size - 1
    low = tf.minimum(tf.floor(c), tf.constant(size - 1, dt))
    c = tf.where(edge, low, c)
    frac = c - low
    low_i = tf.cast(low, tf.int64)
    high_i = tf.where(edge, low_i, low_i + 1)
    own = tf.ones_like(inside) if isinstance(grid, int) else i < g
    return (low_i, high_i), (1 - frac, frac), inside, own


def _roi_align(ctx: EmitContext, node: Node, half_pixel: bool) -> None:
    mode = node.attrs["mode"]
    if mode not in ("avg", "max"):
        raise Decline(f"RoiAlign mode '{mode}'")
    x = ctx.channels_last(node.inputs[0])
    rows, (height, width) = spatial_rows(x, "RoiAlign")
    rois = tf.cast(ctx.onnx_order(node.inputs[1]), x.dtype)
    batch = tf.cast(tf.reshape(ctx.onnx_order(node.inputs[2]), [-1]), tf.int64)
    ph, pw, ratio = node.attrs["output_height"], node.attrs["output_width"], node.attrs["sampling_ratio"]
    dt = x.dtype
    scaled = rois * tf.constant(node.attrs["spatial_scale"], dt) - tf.constant(0.5 if half_pixel else 0.0, dt)
    start_w, start_h, end_w, end_h = (scaled[:, k] for k in range(4))
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not half_pixel:  # malformed ROIs are forced to 1x1
        roi_w, roi_h = tf.maximum(roi_w, tf.ones_like(roi_w)), tf.maximum(roi_h, tf.ones_like(roi_h))
    bin_h, bin_w = _div(roi_h, ph), _div(roi_w, pw)
    grid_h, grid_w = (ratio, ratio) if ratio > 0 else \
        (tf.cast(tf.math.ceil(bin_h), tf.int64), tf.cast(tf.math.ceil(bin_w), tf.int64))
    ys, wy, in_y, own_y = _align_axis(start_h, bin_h, grid_h, ph, height)
    xs, wx, in_x, own_x = _align_axis(start_w, bin_w, grid_w, pw, width)

    def grid5(t: tf.Tensor, along_y: bool) -> tf.Tensor:  # [R, p, G] -> [R, ph, Gh, pw, Gw]
        return t[:, :, :, None, None] if along_y else t[:, None, None, :, :]

    inside = grid5(in_y, True) & grid5(in_x, False)
    own = grid5(own_y, True) & grid5(own_x, False)
    lead = tf.reshape(batch * height * width, [-1, 1, 1, 1, 1])
    corners = []
    for a in range(2):
        for b in range(2):
            w = tf.where(inside, grid5(wy[a], True) * grid5(wx[b], False), tf.zeros([], dt))
            values = tf.gather(rows, lead + grid5(ys[a], True) * width + grid5(xs[b], False))
            corners.append(values * w[..., None])
    if mode == "avg":
        total = tf.reduce_sum(tf.where(own[..., None], tf.add_n(corners), tf.zeros([], dt)), axis=[2, 4])
        count = tf.constant(ratio * ratio, dt) if ratio > 0 else \
            tf.reshape(tf.cast(tf.maximum(grid_h * grid_w, 1), dt), [-1, 1, 1, 1])
        y = total / count
    else:  # ONNX's max: of the four weighted corners, then over the bin's samples; 0 for a bin without samples
        best = tf.reduce_max(tf.where(own[..., None], tf.reduce_max(tf.stack(corners), axis=0),
                                      tf.constant(-np.inf, dt)), axis=[2, 4])
        y = tf.where(tf.equal(best, -np.inf), tf.zeros_like(best), best)
    ctx.set(node.outputs[0], y, channels_last(4))


@op("RoiAlign", since=10)
def roi_align_10(ctx: EmitContext, node: Node) -> None:
    """RoiAlign-10: no pixel shift, malformed ROIs forced to 1x1 (opset 16's output_half_pixel)."""
    _roi_align(ctx, node, half_pixel=False)


@op("RoiAlign", since=16)
def roi_align(ctx: EmitContext, node: Node) -> None:
    """RoiAlign-16 on: coordinate_transformation_mode half_pixel (the default) shifts ROIs by -0.5 pixel."""
    mode = node.attrs["coordinate_transformation_mode"]
    if mode not in ("half_pixel", "output_half_pixel"):
        raise Decline(f"RoiAlign coordinate_transformation_mode '{mode}'")
    _roi_align(ctx, node, half_pixel=mode == "half_pixel")


def _round_half_away(v: tf.Tensor) -> tf.Tensor:
    """C's round (halves away from zero); tf.round rounds halves to even."""
    mag = tf.abs(v)
    whole = tf.floor(mag)
    return tf.sign(v) * (whole + tf.cast(mag - whole >= 0.5, v.dtype))


def _pool_windows(start: tf.Tensor, length: tf.Tensor, pooled: int, size: int):
    """One axis of MaxRoiPool's bins: [R, pooled, K] indices into the axis and whether each is in its bin, the
    edges being floor(p * bin) and ceil((p + 1) * bin) in float32 as ONNX Runtime computes them."""
    bin_size = _div(tf.cast(length, tf.float32), pooled)[:, None]
    edges = tf.constant(np.arange(pooled + 1, dtype=np.float32)[None, :]) * bin_size
    lo = tf.cast(tf.floor(edges[:, :-1]), tf.int64) + start[:, None]
    hi = tf.cast(tf.math.ceil(edges[:, 1:]), tf.int64) + start[:, None]
    lo, hi = (tf.clip_by_value(v, tf.constant(0, tf.int64), tf.constant(size, tf.int64)) for v in (lo, hi))
    k = _samples(hi - lo)
    pos = lo[:, :, None] + k
    return tf.minimum(pos, size - 1), pos < hi[:, :, None]


@op("MaxRoiPool")
def max_roi_pool(ctx: EmitContext, node: Node) -> None:
    """The max over each bin's window of rounded ROI coordinates (empty bins give 0), with ONNX Runtime's window
    arithmetic; windows vary per ROI, so they are gathered at the longest one's size and masked. ONNX Runtime's
    kernel starts each max at FLT_MIN (the smallest positive float, not the lowest), so it reads FLT_MIN where a
    window holds only values below it; graphport takes the max the spec describes."""
    x = ctx.channels_last(node.inputs[0])
    rows, (height, width) = spatial_rows(x, "MaxRoiPool")
    ph, pw = node.attrs["pooled_shape"]
    rois = ctx.onnx_order(node.inputs[1])
    corners = tf.cast(_round_half_away(rois[:, 1:] * tf.constant(node.attrs["spatial_scale"], rois.dtype)), tf.int64)
    start_w, start_h, end_w, end_h = (corners[:, k] for k in range(4))
    one = tf.constant(1, tf.int64)
    ys, in_y = _pool_windows(start_h, tf.maximum(end_h - start_h + 1, one), ph, height)
    xs, in_x = _pool_windows(start_w, tf.maximum(end_w - start_w + 1, one), pw, width)
    batch = tf.cast(rois[:, 0], tf.int64)
    flat = tf.reshape(batch * height * width, [-1, 1, 1, 1, 1]) + ys[:, :, :, None, None] * width + \
        xs[:, None, None, :, :]
    keep = in_y[:, :, :, None, None] & in_x[:, None, None, :, :]
    values = tf.where(keep[..., None], tf.gather(rows, flat), tf.constant(lowest(x.dtype), x.dtype))
    y = tf.reduce_max(values, axis=[2, 4])
    empty = ~tf.reduce_any(in_y, axis=2)[:, :, None, None] | ~tf.reduce_any(in_x, axis=2)[:, None, :, None]
    ctx.set(node.outputs[0], tf.where(empty, tf.zeros_like(y), y), channels_last(4))


def _scalar(ctx: EmitContext, node: Node, k: int, default: float | None, dtype: tf.DType) -> tf.Tensor | None:
    """Optional scalar input `k` as a TF scalar (None when absent and without a default)."""
    if not opt_input(node, k):
        return None if default is None else tf.constant(default, dtype)
    return tf.reshape(tf.cast(ctx.onnx_order(node.inputs[k]), dtype), [])


def _iou_threshold(t: tf.Tensor) -> tf.Tensor:
    """TF suppresses at IoU >= threshold, ONNX above it: the next float32 up gives ONNX's rule (at least the
    smallest normal float, which oneDNN's flush-to-zero keeps), capped at TF's limit of 1."""
    up = tf.math.nextafter(tf.maximum(t, tf.zeros_like(t)), tf.constant(np.inf, tf.float32))
    return tf.minimum(tf.maximum(up, tf.constant(np.finfo(np.float32).tiny)), tf.ones_like(t))


def _separate(boxes: tf.Tensor, groups: tf.Tensor | int) -> tf.Tensor:
    """[M, N, 4] corner boxes shifted along x by m * (x extent + 1), so that boxes of different groups never
    overlap and one NMS call serves them all. Group 0 is unchanged (a single image is exact); in later groups the
    shifted coordinates round, so an IoU within about M * extent * 2^-24 / box width of the threshold may be
    decided differently than by ONNX Runtime."""
    if isinstance(groups, int) and groups == 1:
        return boxes
    xs = tf.stack([boxes[..., 1], boxes[..., 3]])
    span = tf.reduce_max(xs) - tf.reduce_min(xs) + 1
    shift = tf.reshape(tf.cast(tf.range(groups), tf.float32) * span, [-1, 1])
    return tf.stack([boxes[..., 0], boxes[..., 1] + shift, boxes[..., 2], boxes[..., 3] + shift], axis=-1)


@op("NonMaxSuppression", since=10)
def non_max_suppression(ctx: EmitContext, node: Node) -> None:
    """TF's NonMaxSuppressionV3 handles one set of boxes, with ONNX's score order, tie-breaking by lower index,
    strict score threshold and IoU formula (including flipped corners). The batches (and the classes, unless
    their count is known, in which case each class gets its own call) are made disjoint by `_separate`; each
    (batch, class) keeps its first max_output_boxes_per_class selections, and rows come out in ONNX's
    (batch, class, score) order."""
    boxes = ctx.onnx_order(node.inputs[0])
    scores = ctx.onnx_order(node.inputs[1])
    known = ctx.const(node.inputs[2]) if opt_input(node, 2) else np.zeros(1)
    if known is not None and known.dtype != object and int(known.ravel()[0]) <= 0:  # absent means 0: no output
        ctx.set(node.outputs[0], tf.zeros([0, 3], tf.int64))
        return
    limit = _scalar(ctx, node, 2, None, tf.int64)
    threshold = _scalar(ctx, node, 3, 0.0, tf.float32)
    floor = _scalar(ctx, node, 4, -np.inf, tf.float32)
    if node.attrs["center_point_box"]:  # [x_center, y_center, width, height] -> [y1, x1, y2, x2]
        half_w, half_h = boxes[..., 2] / 2, boxes[..., 3] / 2
        boxes = tf.stack([boxes[..., 1] - half_h, boxes[..., 0] - half_w, boxes[..., 1] + half_h,
                          boxes[..., 0] + half_w], axis=-1)
    boxes = tf.where(threshold >= 1, tf.zeros_like(boxes), boxes)  # nothing to suppress (IoU <= 1): no areas
    iou = _iou_threshold(threshold)
    dyn = tf.shape(scores, out_type=tf.int64)
    n_batch, n_cls, n_box = (scores.shape[a] if scores.shape[a] is not None else dyn[a] for a in range(3))

    def nms(b: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        b, s = tf.reshape(b, [-1, 4]), tf.reshape(s, [-1])
        return tf.cast(tf.image.non_max_suppression(b, s, tf.cast(tf.size(s), tf.int32), iou, floor), tf.int64)

    if isinstance(n_cls, int):  # one call per class over the batches' boxes side by side
        shifted = _separate(boxes, n_batch)
        picks = [nms(shifted, scores[:, c]) for c in range(n_cls)]
        found = tf.concat(picks, 0)
        cls = tf.concat([tf.fill(tf.shape(p), tf.constant(c, tf.int64)) for c, p in enumerate(picks)], 0)
        group, box = found // n_box * n_cls + cls, found % n_box
    else:
        every = tf.broadcast_to(boxes[:, None], dims_vector([n_batch, n_cls, n_box, 4]))
        shifted = _separate(tf.reshape(every, dims_vector([-1, n_box, 4])), n_batch * n_cls)
        found = nms(shifted, scores)
        group, box = found // n_box, found % n_box
    order = tf.argsort(group, stable=True)  # by (batch, class); within one, selection (score) order stays
    group, box = tf.gather(group, order), tf.gather(box, order)
    pos = tf.range(tf.size(group, out_type=tf.int64))
    first = tf.gather(tf.math.unsorted_segment_min(pos, group, tf.cast(n_batch * n_cls, tf.int64)), group)
    rows = tf.stack([group // n_cls, group % n_cls, box], axis=1)
    ctx.set(node.outputs[0], tf.boolean_mask(rows, pos - first < limit))
