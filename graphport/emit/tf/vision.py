"""Sampling and rearranging ops: GridSample, AffineGrid, DeformConv, MaxUnpool, Col2Im and CenterCropPad.

GridSample and DeformConv read their input at coordinates computed at run time, which no TF image kernel takes
(ResizeBilinear and CropAndResize sample regular grids with their own edge rules, and have no bicubic, reflection
or N-D form). Each is a Gather per interpolation tap from the channels-last input flattened to rows
[N * prod(spatial), C]: one tap per axis for nearest, two for linear, four for cubic, every combination of the
axes' taps weighted and summed. Padding applies to each tap's index (zero weight, clamped or reflected index), as
ONNX Runtime and PyTorch do; ONNX's reference first moves an out-of-range coordinate inside, which gives the same
result except for cubic with border padding.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from graphport.emit.tf.context import EmitContext, channels_last, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node
from graphport.ir.symbolic import Sym

Tap = tuple[tf.Tensor, tf.Tensor | None]  # (int64 row index along one axis, weight or None for "take as is")
_PADDINGS = ("zeros", "border", "reflection")


def int_vector(ctx: EmitContext, name: str) -> list[int | tf.Tensor] | tf.Tensor:
    """An int vector input (a shape, sizes): Python ints where folded to numbers and int64 scalars where folded to
    symbols (a batch read from the input's shape), else one runtime int64 vector."""
    arr = ctx.const(name)
    if arr is None:
        return tf.reshape(tf.cast(ctx.onnx_order(name), tf.int64), [-1])
    return [ctx.sym_value(v) if isinstance(v, Sym) else int(v) for v in arr.ravel()]


def dims_vector(dims: list) -> list[int] | tf.Tensor:
    """A shape operand from Python ints and int64 scalars: the ints as they are when all are known."""
    if all(isinstance(d, int) for d in dims):
        return dims
    return tf.stack([tf.constant(d, tf.int64) if isinstance(d, int) else tf.cast(d, tf.int64) for d in dims])


def spatial_rows(x: tf.Tensor, op_type: str) -> tuple[tf.Tensor, list[int]]:
    """A channels-last [N, *spatial, C] tensor as rows [N * prod(spatial), C], with its static spatial size."""
    spatial = x.shape.as_list()[1:-1]
    if None in spatial:
        raise Decline(f"{op_type} over a dynamic spatial size")
    c = x.shape[-1]
    return tf.reshape(x, [-1, c] if c is not None else tf.stack([-1, tf.shape(x)[-1]])), spatial


def reflect(x: tf.Tensor, lo: float, hi: float) -> tf.Tensor:
    """Fold coordinates outside [lo, hi] back in by repeated reflection at the borders, as ONNX's reference."""
    span = hi - lo
    if span <= 0:
        return tf.zeros_like(x) + lo
    below = x < lo
    dist = tf.where(below, lo - x, x - hi)
    bounces = tf.floor(dist / span)
    rest = dist - bounces * span
    even = tf.equal(tf.math.floormod(bounces, 2.0), 0.0)
    from_lo, from_hi = lo + rest, hi - rest
    folded = tf.where(below, tf.where(even, from_lo, from_hi), tf.where(even, from_hi, from_lo))
    return tf.where(below | (x > hi), folded, x)


def _cubic(t: tf.Tensor) -> list[tf.Tensor]:
    """Keys' cubic convolution weights (a = -0.75, PyTorch's and ONNX's) for taps at -1, 0, 1, 2 from floor(x)."""
    a = -0.75
    return [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a]


def axis_taps(x: tf.Tensor, size: int, mode: str, padding: str, lo: float, hi: float) -> list[Tap]:
    """Taps along one axis of length `size` at pixel coordinates `x`. A tap outside the axis reads zero (its weight
    is zeroed), the edge (border) or its reflection in [lo, hi] (reflection), per `padding`."""
    if mode == "nearest":
        taps: list[tuple[tf.Tensor, tf.Tensor | None]] = [(tf.cast(x, tf.int64), None)]  # truncation, as ONNX's
    else:
        base = tf.floor(x)
        t = x - base
        first = tf.cast(base, tf.int64)
        if mode == "linear":
            taps = [(first, 1 - t), (first + 1, t)]
        else:
            taps = [(first + k, w) for k, w in zip((-1, 0, 1, 2), _cubic(t))]
    out = []
    for idx, w in taps:
        if padding == "zeros":
            inside = (idx >= 0) & (idx < size)
            w = tf.cast(inside, x.dtype) if w is None else tf.where(inside, w, tf.zeros_like(w))
        elif padding == "reflection":
            idx = tf.cast(reflect(tf.cast(idx, x.dtype), lo, hi), tf.int64)
        out.append((tf.clip_by_value(idx, tf.constant(0, tf.int64), tf.constant(size - 1, tf.int64)), w))
    return out


def gather_taps(rows: tf.Tensor, base: tf.Tensor, taps: list[list[Tap]], strides: list[int]) -> tf.Tensor:
    """Sum over every combination of the axes' taps of rows[base + sum(index * stride)] times the weights'
    product: [*index shape, C]."""
    parts = []
    for combo in itertools.product(*taps):
        flat, weight = base, None
        for (idx, w), stride in zip(combo, strides):
            flat = flat + idx * stride
            if w is not None:
                weight = w if weight is None else weight * w
        g = tf.gather(rows, flat)
        parts.append(g if weight is None else g * tf.cast(weight, rows.dtype)[..., None])
    return tf.add_n(parts) if len(parts) > 1 else parts[0]


def _grid_sample(ctx: EmitContext, node: Node, mode: str) -> None:
    padding, align = node.attrs["padding_mode"], bool(node.attrs["align_corners"])
    if padding not in _PADDINGS:
        raise Decline(f"GridSample padding_mode '{padding}'")
    x = ctx.channels_last(node.inputs[0])
    if not x.dtype.is_floating:
        raise Decline(f"GridSample over {x.dtype.name} data (ONNX Runtime samples floats only)")
    rows, spatial = spatial_rows(x, "GridSample")
    grid = ctx.onnx_order(node.inputs[1])
    grid = grid if grid.dtype in (tf.float32, tf.float64) else tf.cast(grid, tf.float32)
    r = len(spatial)
    taps = []
    for axis, size in enumerate(spatial):
        g = grid[..., r - 1 - axis]  # the grid lists x (the last axis) first
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        pos = (g + 1) / 2 * (size - 1) if align else ((g + 1) * size - 1) / 2
        if mode == "nearest":
            pos = tf.round(pos)  # half to even, as ONNX Runtime's nearbyint
        taps.append(axis_taps(pos, size, mode, padding, lo, hi))
    batch = tf.range(tf.shape(grid, out_type=tf.int64)[0]) * int(np.prod(spatial))
    strides = [int(np.prod(spatial[a + 1:])) for a in range(r)]
    y = gather_taps(rows, tf.reshape(batch, [-1] + [1] * r), taps, strides)
    ctx.set(node.outputs[0], y, channels_last(r + 2))


@op("GridSample", since=16)
def grid_sample_16(ctx: EmitContext, node: Node) -> None:
    """GridSample-16 names its modes bilinear, nearest and bicubic."""
    names = {"bilinear": "linear", "nearest": "nearest", "bicubic": "cubic"}
    if node.attrs["mode"] not in names:
        raise Decline(f"GridSample mode '{node.attrs['mode']}'")
    _grid_sample(ctx, node, names[node.attrs["mode"]])


@op("GridSample", since=20)
def grid_sample(ctx: EmitContext, node: Node) -> None:
    """GridSample-20 on: N-D, modes linear, nearest and cubic."""
    if node.attrs["mode"] not in ("linear", "nearest", "cubic"):
        raise Decline(f"GridSample mode '{node.attrs['mode']}'")
    _grid_sample(ctx, node, node.attrs["mode"])


def _base_coords(size: int | tf.Tensor, align: bool) -> tf.Tensor:
    """AffineGrid's evenly spaced positions in [-1, 1] along one axis, in float64 as ONNX's reference."""
    if isinstance(size, int):
        i = np.arange(size, dtype=np.float64)
        coords = -1 + i * (2 / (size - 1) if size > 1 else 0.0) if align else -1 + (2 * i + 1) / size
        return tf.constant(coords)
    i, n = tf.range(tf.cast(size, tf.float64)), tf.cast(size, tf.float64)
    if align:
        return -1 + i * tf.where(n > 1, 2 / tf.maximum(n - 1, 1), tf.zeros_like(n))
    return -1 + (2 * i + 1) / n


@op("AffineGrid", since=20)
def affine_grid(ctx: EmitContext, node: Node) -> None:
    """theta [N, r, r+1] applied to the homogeneous positions (x, y[, z], 1), x along the last axis, in float64 as
    ONNX's reference: a broadcast sum of r + 1 products, so the base grid is never tiled per batch and no MatMul
    broadcasts a batch dim (oneDNN's BatchMatMulV2 fails on operands of different ranks)."""
    theta = ctx.onnx_order(node.inputs[0])
    r = theta.shape[1]
    if r is None:
        raise Decline("AffineGrid theta with an unknown number of spatial dims")
    size = int_vector(ctx, node.inputs[1])
    dims = size[2:] if isinstance(size, list) else [size[2 + a] for a in range(r)]
    t = tf.cast(theta, tf.float64)
    grid = tf.reshape(t[:, :, r], [-1] + [1] * r + [r])
    for j in range(r):  # input coordinate j runs along spatial axis r - 1 - j
        axis = r - 1 - j
        coords = tf.reshape(_base_coords(dims[axis], bool(node.attrs["align_corners"])),
                            [1] + [-1 if a == axis else 1 for a in range(r)] + [1])
        grid = grid + tf.reshape(t[:, :, j], [-1] + [1] * r + [r]) * coords
    ctx.set(node.outputs[0], tf.cast(grid, theta.dtype))


def _weights(ctx: EmitContext, name: str, groups: int) -> tf.Tensor:
    """W [oC, C/g, *k] as per-group matrices [g, C/g * K, oC/g], rearranged now when W is a constant."""
    w = ctx.const(name)
    xp, w = (np, w) if w is not None and w.dtype != object else (tf, ctx.onnx_order(name))
    oc = w.shape[0]
    m = xp.reshape(w, [groups, oc // groups, -1])
    m = xp.transpose(m, [0, 2, 1])
    return tf.constant(m) if xp is np else m


@op("DeformConv", since=19)
def deform_conv(ctx: EmitContext, node: Node) -> None:
    """Bilinear samples at each kernel tap's offset position (zero outside the input), times the mask, then one
    MatMul per group: im2col with runtime positions, which Conv kernels cannot take."""
    x = ctx.channels_last(node.inputs[0])
    rows, spatial = spatial_rows(x, "DeformConv")
    r, c = len(spatial), x.shape[-1]
    w_shape = ctx.shape_ints(node.inputs[1])
    kernel = list(node.attrs.get("kernel_shape") or w_shape[2:])
    groups, og = node.attrs["group"], node.attrs["offset_group"]
    if c is None or w_shape[0] is None or None in kernel:
        raise Decline("DeformConv with unknown channel counts or kernel shape")
    strides = list(node.attrs.get("strides", [1] * r))
    dilations = list(node.attrs.get("dilations", [1] * r))
    pads = list(node.attrs.get("pads", [0] * 2 * r))
    out = [(d + pads[a] + pads[a + r] - dilations[a] * (kernel[a] - 1) - 1) // strides[a] + 1
           for a, d in enumerate(spatial)]
    k = int(np.prod(kernel))
    off = tf.reshape(ctx.onnx_order(node.inputs[2]), [-1, og, k, r, *out])
    kpos = np.stack(np.unravel_index(np.arange(k), kernel), axis=-1)  # [K, r]
    dt = off.dtype.as_numpy_dtype
    taps = []
    for a, size in enumerate(spatial):
        at = (np.arange(out[a]) * strides[a] - pads[a]).reshape([-1 if b == a else 1 for b in range(r)])
        fixed = kpos[:, a].reshape([k] + [1] * r) * dilations[a] + at  # [K, *out]
        pos = off[:, :, :, a] + tf.constant(fixed.astype(dt))
        taps.append(axis_taps(pos, size, "linear", "zeros", 0.0, size - 1.0))
    # rows of one offset group's channels: ((n * P + p) * og + g)
    rows = tf.reshape(rows, [-1, c // og])
    p = int(np.prod(spatial))
    lead = tf.reshape(tf.range(tf.shape(off, out_type=tf.int64)[0]) * p * og, [-1] + [1] * (r + 2)) + \
        tf.constant(np.arange(og, dtype=np.int64).reshape([1, og] + [1] * (r + 1)))
    cols = gather_taps(rows, lead, taps, [int(np.prod(spatial[a + 1:])) * og for a in range(r)])
    if opt_input(node, 4):  # cols: [N, og, K, *out, C/og]
        cols = cols * tf.reshape(ctx.onnx_order(node.inputs[4]), [-1, og, k, *out, 1])
    cols = tf.transpose(cols, [0, *range(3, 3 + r), 1, 3 + r, 2])  # [N, *out, og, C/og, K]: C-major, then K
    w = _weights(ctx, node.inputs[1], groups)
    if groups == 1:
        y = tf.matmul(tf.reshape(cols, [-1, c * k]), w[0])
    else:
        cols = tf.transpose(tf.reshape(cols, [-1, groups, c // groups * k]), [1, 0, 2])
        y = tf.reshape(tf.transpose(tf.matmul(cols, w), [1, 0, 2]), [-1, w_shape[0]])
    y = tf.reshape(y, [-1, *out, w_shape[0]])
    if opt_input(node, 3):
        y = y + ctx.onnx_order(node.inputs[3])
    ctx.set(node.outputs[0], y, channels_last(r + 2))


@op("MaxUnpool", since=9)
def max_unpool(ctx: EmitContext, node: Node) -> None:
    """Values written at their flat indices into a zero tensor of the output shape. With output_shape given, the
    indices address that shape, as ONNX Runtime reads them (and as MaxPool's Indices of an input of that shape
    are); ONNX's reference reads them in the inferred shape and pads that instead. TensorScatterUpdate, not
    ScatterNd: overlapping pool windows repeat an index, which must be written once, not summed."""
    x = ctx.onnx_order(node.inputs[0])
    idx = tf.reshape(tf.cast(ctx.onnx_order(node.inputs[1]), tf.int64), [-1, 1])
    if opt_input(node, 2):
        shape = int_vector(ctx, node.inputs[2])
    else:
        kernel = list(node.attrs["kernel_shape"])
        n = len(kernel)
        strides, pads = node.attrs.get("strides", [1] * n), node.attrs.get("pads", [0] * 2 * n)
        dims = x.shape.as_list()
        if None in dims[2:]:
            raise Decline("MaxUnpool over a dynamic spatial size without output_shape")
        dyn = tf.shape(x, out_type=tf.int64)
        shape = [dims[0] if dims[0] is not None else dyn[0], dims[1] if dims[1] is not None else dyn[1],
                 *[(d - 1) * s - pads[a] - pads[a + n] + k for a, (d, s, k) in enumerate(zip(dims[2:], strides, kernel))]]
    shape = dims_vector(shape) if isinstance(shape, list) else shape
    total = int(np.prod(shape)) if isinstance(shape, list) else tf.reduce_prod(shape)
    flat = tf.tensor_scatter_nd_update(tf.zeros(dims_vector([total]), x.dtype), idx, tf.reshape(x, [-1]))
    ctx.set(node.outputs[0], tf.reshape(flat, shape))


_NP_OPS = (lambda n: np.arange(n, dtype=np.int64), lambda keep, v: np.where(keep, v, -1))
_TF_OPS = (lambda n: tf.range(n, dtype=tf.int64), lambda keep, v: tf.where(keep, v, tf.constant(-1, tf.int64)))


def _col2im_slots(ops: tuple[Callable, Callable], image: list, block: list, dilations: list[int], pads: list[int],
                  strides: list[int]):
    """([K, L] flat image position each column entry (kernel tap k, block l) adds to, -1 outside the image; K).
    Written with the operators numpy and TF share, so constant shapes give constants."""
    arange, outside_to = ops
    n = len(image)
    blocks = [(image[a] + pads[a] + pads[a + n] - (dilations[a] * (block[a] - 1) + 1)) // strides[a] + 1
              for a in range(n)]
    k_total, l_total = block[0], blocks[0]
    for a in range(1, n):
        k_total, l_total = k_total * block[a], l_total * blocks[a]
    k, col = arange(k_total)[:, None], arange(l_total)[None, :]
    flat, inside, k_stride, l_stride = 0, True, k_total, l_total
    for a in range(n):
        k_stride, l_stride = k_stride // block[a], l_stride // blocks[a]
        pos = (col // l_stride % blocks[a]) * strides[a] - pads[a] + (k // k_stride % block[a]) * dilations[a]
        inside = inside & (pos >= 0) & (pos < image[a])
        flat = flat * image[a] + pos
    return outside_to(inside, flat), k_total


@op("Col2Im", since=18)
def col2im(ctx: EmitContext, node: Node) -> None:
    """A segment sum of the columns into the image's flat positions (UnsortedSegmentSum drops the -1s), written
    channels last; the positions are constants when image_shape and block_shape are, else computed at run time."""
    data = ctx.onnx_order(node.inputs[0])  # [N, C * K, L]
    image, block = int_vector(ctx, node.inputs[1]), int_vector(ctx, node.inputs[2])
    n = len(image) if isinstance(image, list) else image.shape[0]
    if n is None:
        raise Decline("Col2Im image_shape of unknown length")
    image = image if isinstance(image, list) else [image[a] for a in range(n)]
    block = block if isinstance(block, list) else [block[a] for a in range(n)]
    static = all(isinstance(v, int) for v in image + block)
    slots, k = _col2im_slots(_NP_OPS if static else _TF_OPS, image, block, list(node.attrs.get("dilations", [1] * n)),
                             list(node.attrs.get("pads", [0] * 2 * n)), list(node.attrs.get("strides", [1] * n)))
    dims, dyn = data.shape.as_list(), tf.shape(data, out_type=tf.int64)
    batch, length = [d if d is not None else dyn[a] for a, d in ((0, dims[0]), (2, dims[2]))]
    chans = (dims[1] if dims[1] is not None else dyn[1]) // k
    cols = tf.transpose(tf.reshape(data, dims_vector([batch, chans, k, length])), [2, 3, 0, 1])
    cols = tf.reshape(cols, dims_vector([-1, batch, chans]))  # [K * L, N, C]
    total = int(np.prod(image)) if static else tf.reduce_prod(dims_vector(image))
    img = tf.math.unsorted_segment_sum(cols, tf.reshape(tf.constant(slots) if static else slots, [-1]), total)
    ctx.set(node.outputs[0], tf.reshape(tf.transpose(img, [1, 0, 2]), dims_vector([batch, *image, chans])),
            channels_last(n + 2))


@op("CenterCropPad", since=18)
def center_crop_pad(ctx: EmitContext, node: Node) -> None:
    """A Slice of the centred window (start rounded down) and a zero Pad (the odd pixel after), on the input's own
    layout; each axis's amounts are ints when its size and target are known, else runtime scalars."""
    x = ctx.raw(node.inputs[0])
    rank = x.shape.rank
    perm = ctx.perm(node.inputs[0]) or tuple(range(rank))
    axes = [a % rank for a in node.attrs.get("axes", range(rank))]
    target = int_vector(ctx, node.inputs[1])
    begin, size, pads = [0] * rank, [-1] * rank, [[0, 0] for _ in range(rank)]
    dyn = None
    for i, a in enumerate(axes):
        t_axis = perm.index(a)
        dim = x.shape[t_axis]
        if dim is None:
            dyn = tf.shape(x, out_type=tf.int64) if dyn is None else dyn
            dim = dyn[t_axis]
        want = target[i]
        if isinstance(dim, int) and isinstance(want, int):
            begin[t_axis], size[t_axis] = max(dim - want, 0) // 2, min(dim, want)
            extra = max(want - dim, 0)
        else:
            dim, want = tf.cast(dim, tf.int64), tf.cast(want, tf.int64)
            zero = tf.constant(0, tf.int64)
            begin[t_axis], size[t_axis] = tf.maximum(dim - want, zero) // 2, tf.minimum(dim, want)
            extra = tf.maximum(want - dim, zero)
        pads[t_axis] = [extra // 2, extra - extra // 2]
    y = tf.slice(x, dims_vector(begin), dims_vector(size))
    flat = dims_vector([v for pair in pads for v in pair])
    y = tf.pad(y, pads if isinstance(flat, list) else tf.reshape(flat, [rank, 2]))
    ctx.set(node.outputs[0], y, ctx.perm(node.inputs[0]))
