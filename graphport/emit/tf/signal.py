"""Signal ops: window functions, DFT, STFT and MelWeightMatrix (audio front ends inside the graph).

Fourier transforms run on TF's FFT, IFFT, RFFT and IRFFT kernels (libtensorflow 2.5 has them for float32 and
float64), which transform the innermost axis of a complex tensor. ONNX instead keeps complex numbers as a trailing
(real, imag) axis and lets the transform run over any other axis, so a DFT becomes: pair -> complex, swap the
signal axis innermost, transform, swap back, complex -> pair. Sizes known at conversion time stay Python ints and
numpy constants; sizes fed at run time (ONNX's conformance tests feed every input) are computed in-graph by the
same formulas. Window and MelWeightMatrix nodes whose inputs are all constant do not reach these handlers: the
constant-folding pass (passes/fold) evaluates them with ONNX's reference, so here they are built from runtime
sizes only.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from onnx import helper

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node

Size = int | tf.Tensor  # a length known now (int) or only at run time (int64 scalar tensor)


def _size(ctx: EmitContext, name: str) -> Size:
    """A scalar size input: a Python int when constant, else an int64 scalar (a symbolic one is materialised)."""
    arr = ctx.const(name)
    if arr is not None and arr.dtype != object:
        return int(arr.reshape(-1)[0])
    return tf.reshape(tf.cast(ctx.onnx_order(name), tf.int64), [])


def _dim(t: tf.Tensor, axis: int) -> Size:
    """Dim `axis` of `t`: static when TF knows it, else read at run time."""
    d = t.shape[axis]
    return d if d is not None else tf.shape(t, out_type=tf.int64)[axis]


def _out_dtype(node: Node) -> tf.DType:
    return tf.as_dtype(helper.tensor_dtype_to_np_dtype(node.attrs["output_datatype"]))


# ---- windows ----------------------------------------------------------------------------------------------------
# Each ONNX window is the cosine sum a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N). Hamming's a0 is 25/46, as ONNX
# and ONNX Runtime define it (Hamming's value that cancels the first sidelobe), not the rounded 0.54 of numpy and
# torch.
_WINDOWS = {"HannWindow": (0.5, 0.5, 0.0), "HammingWindow": (25 / 46, 21 / 46, 0.0),
            "BlackmanWindow": (0.42, 0.5, 0.08)}


@op(*_WINDOWS, since=17)
def window(ctx: EmitContext, node: Node) -> None:
    """ONNX windows are periodic by default (N = size: the window that tiles under a hop, what STFT front ends
    use, torch's default too); periodic=0 gives the symmetric one (N = size - 1). Evaluated in float64, then cast
    to `output_datatype`, so a float32 window is rounded once."""
    a0, a1, a2 = _WINDOWS[node.op_type]
    size = _size(ctx, node.inputs[0])
    n = tf.cast(tf.range(size), tf.float64)
    period = tf.cast(size if node.attrs["periodic"] else size - 1, tf.float64)
    phase = n * (2 * math.pi) / period
    w = a0 - a1 * tf.cos(phase)
    if a2:
        w += a2 * tf.cos(2 * phase)
    ctx.set(node.outputs[0], tf.cast(w, _out_dtype(node)))


# ---- DFT --------------------------------------------------------------------------------------------------------
def _swap(t: tf.Tensor, a: Size, b: int) -> tf.Tensor:
    """`t` with axes `a` and `b` exchanged (its own inverse); `a` may be a runtime axis, then so is the Transpose."""
    rank = t.shape.rank
    if isinstance(a, int):
        if a == b:
            return t
        perm = list(range(rank))
        perm[a], perm[b] = b, a
        return tf.transpose(t, perm)
    idx = tf.range(rank, dtype=tf.int64)
    out = tf.transpose(t, tf.where(tf.equal(idx, a), tf.cast(b, tf.int64), tf.where(tf.equal(idx, b), a, idx)))
    out.set_shape([None] * rank)
    return out


def _fit(t: tf.Tensor, length: Size) -> tf.Tensor:
    """`t` zero-padded or cut to `length` on its innermost axis, as ONNX's dft_length does to the signal. TF 2.5's
    RFFT kernel only crops (its Python wrapper pads), so every transform gets exactly the size it needs."""
    n, rank = t.shape[-1], t.shape.rank
    if isinstance(length, int) and n is not None:
        if length <= n:
            return t[..., :length]
        return tf.pad(t, [[0, 0]] * (rank - 1) + [[0, length - n]])
    extra = tf.maximum(tf.cast(length, tf.int64) - tf.shape(t, out_type=tf.int64)[-1], 0)
    return tf.pad(t, tf.scatter_nd([[rank - 1, 1]], tf.reshape(extra, [1]), [rank, 2]))[..., :length]


def _fourier(x: tf.Tensor, axis: Size, length: Size | None, inverse: bool, onesided: bool) -> tf.Tensor:
    """ONNX's DFT of `x` ([..., 1|2] in ONNX order) over the non-negative `axis`.

    A forward transform of a real signal is RFFT (length // 2 + 1 bins), whose DC and Nyquist bins have an exactly
    zero imaginary part (a complex FFT leaves rounding noise there); the full spectrum appends the conjugate mirror.
    onesided forward on a complex signal keeps the first length // 2 + 1 bins of the full FFT (what ONNX Runtime
    and the reference return). onesided inverse is IRFFT: one-sided bins in, a real signal of `length` (default
    2 * (bins - 1)) out, with a trailing axis of 1. IFFT includes ONNX's 1 / length. Half-precision inputs are
    transformed in float32, as TF has no half FFT."""
    if x.shape[-1] not in (1, 2):
        raise Decline(f"a trailing (real, imag) axis of size {x.shape[-1]} (must be a static 1 or 2)")
    dtype, last = x.dtype, x.shape.rank - 2
    work = tf.float64 if dtype == tf.float64 else tf.float32
    x = tf.cast(x, work)
    re = _swap(x[..., 0], axis, last)
    n = _dim(re, -1)
    if length is None:
        length = 2 * (n - 1) if inverse and onesided else n
    if not inverse and x.shape[-1] == 1:
        y = tf.raw_ops.RFFT(input=_fit(re, length), fft_length=_fft_length(length),
                            Tcomplex=tf.complex128 if work == tf.float64 else tf.complex64)
        if not onesided:  # the upper bins mirror the lower ones, conjugated
            y = tf.concat([y, tf.math.conj(tf.reverse(y[..., 1:(length + 1) // 2], [-1]))], axis=-1)
    else:
        z = tf.complex(re, _swap(x[..., 1], axis, last) if x.shape[-1] == 2 else tf.zeros_like(re))
        if inverse and onesided:
            y = tf.raw_ops.IRFFT(input=z, fft_length=_fft_length(length), Treal=work)
        else:
            y = (tf.signal.ifft if inverse else tf.signal.fft)(_fit(z, length))
            y = y[..., :length // 2 + 1] if onesided else y
    y = _swap(y, axis, last)
    pair = y[..., None] if y.dtype == work else tf.stack([tf.math.real(y), tf.math.imag(y)], axis=-1)
    return tf.cast(pair, dtype)


def _fft_length(length: Size) -> tf.Tensor:
    """RFFT/IRFFT's fft_length operand: an int32 vector of one element."""
    return tf.reshape(tf.cast(length, tf.int32), [1])


def _dft(ctx: EmitContext, node: Node, axis: Size) -> None:
    rank = ctx.rank(node.inputs[0])
    if isinstance(axis, int):
        axis %= rank
        if axis == rank - 1:
            raise Decline("DFT over the trailing (real, imag) axis")
    else:
        axis = tf.where(axis < 0, axis + rank, axis)
    length = _size(ctx, node.inputs[1]) if opt_input(node, 1) else None
    inverse, onesided = bool(node.attrs["inverse"]), bool(node.attrs["onesided"])
    if inverse and onesided and length is not None:
        bins = ctx.shape_ints(node.inputs[0])[axis] if isinstance(axis, int) else None
        if not isinstance(length, int) or bins is None or length // 2 + 1 != bins:
            raise Decline("IRFFT (onesided inverse DFT) with a dft_length that does not match the input's bins "
                          "(dft_length // 2 + 1 == bins, checked at conversion): ONNX Runtime and ONNX's reference "
                          "pad or cut the bins differently")
    y = _fourier(ctx.onnx_order(node.inputs[0]), axis, length, inverse, onesided)
    ctx.set(node.outputs[0], y)


@op("DFT", since=17)
def dft_axis_attribute(ctx: EmitContext, node: Node) -> None:
    """DFT-17: `axis` is an attribute (default 1, the first axis after the batch)."""
    _dft(ctx, node, node.attrs["axis"])


@op("DFT", since=20)
def dft_axis_input(ctx: EmitContext, node: Node) -> None:
    """DFT-20: `axis` became an optional input (default -2, the last signal axis). A runtime axis turns the two
    swaps around the transform into Transposes with in-graph permutations."""
    _dft(ctx, node, _size(ctx, node.inputs[2]) if opt_input(node, 2) else -2)


# ---- STFT -------------------------------------------------------------------------------------------------------
def _frames(x: tf.Tensor, length: Size, step: Size) -> tf.Tensor:
    """[batch, frames, length, c] from [batch, samples, c]: one Gather of frame-start + offset indices, a numpy
    constant when all sizes are known. frames = (samples - length) // step + 1 (no padding, torch's center=False)."""
    samples = _dim(x, 1)
    if all(isinstance(v, int) for v in (samples, length, step)):
        idx = np.arange((samples - length) // step + 1)[:, None] * step + np.arange(length)
        return tf.gather(x, idx.astype(np.int64), axis=1)
    count = (samples - length) // step + 1
    idx = tf.range(count, dtype=tf.int64)[:, None] * step + tf.range(length, dtype=tf.int64)[None, :]
    return tf.gather(x, idx, axis=1)


@op("STFT", since=17)
def stft(ctx: EmitContext, node: Node) -> None:
    """Frame, weight by the window, then one DFT over the frame axis. frame_length defaults to the window's length,
    else the whole signal; no window means a rectangular one. A [batch, samples] signal (what torch's exporter
    emits, and ONNX Runtime accepts) is read as real."""
    x = ctx.onnx_order(node.inputs[0])
    if x.shape.rank == 2:
        x = x[..., None]
    step = _size(ctx, node.inputs[1])
    win = ctx.onnx_order(node.inputs[2]) if opt_input(node, 2) else None
    if opt_input(node, 3):
        length = _size(ctx, node.inputs[3])
    else:
        length = _dim(win, 0) if win is not None else _dim(x, 1)
    frames = _frames(x, length, step)
    if win is not None:
        frames *= tf.reshape(tf.cast(win, frames.dtype), [-1, 1])
    ctx.set(node.outputs[0], _fourier(frames, 2, length, inverse=False, onesided=bool(node.attrs["onesided"])))


# ---- MelWeightMatrix --------------------------------------------------------------------------------------------
def _mel(hz: tf.Tensor) -> tf.Tensor:
    return 2595.0 * tf.math.log(1.0 + hz / 700.0) / math.log(10.0)


@op("MelWeightMatrix", since=17)
def mel_weight_matrix(ctx: EmitContext, node: Node) -> None:
    """ONNX's own band-edge rule, which is neither librosa's nor tf.signal's: num_mel_bins + 2 points start at
    lower_edge_hertz and step by (mel(upper) - mel(lower)) / (num_mel_bins + 2) (so the last point stops short of
    upper_edge_hertz), each snapped to DFT bin floor((dft_length + 1) * hz / sample_rate). Filter i rises linearly
    from point i to point i + 1 and falls to zero at point i + 2, peaking at 1; a zero-width rise is a single 1.
    Output [dft_length // 2 + 1, num_mel_bins]."""
    n_mel, dft_length, rate = (tf.reshape(tf.cast(ctx.onnx_order(i), tf.int64), []) for i in node.inputs[:3])
    low, high = (tf.reshape(tf.cast(ctx.onnx_order(i), tf.float64), []) for i in node.inputs[3:5])
    points = tf.cast(tf.range(n_mel + 2), tf.float64)
    mels = _mel(low) + points * (_mel(high) - _mel(low)) / tf.cast(n_mel + 2, tf.float64)
    hz = 700.0 * (tf.exp(mels / 2595.0 * math.log(10.0)) - 1.0)
    edges = tf.floor(tf.cast(dft_length + 1, tf.float64) * hz / tf.cast(rate, tf.float64))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    j = tf.cast(tf.range(dft_length // 2 + 1), tf.float64)[:, None]
    rise = tf.where(centre > left, (j - left) / tf.maximum(centre - left, 1.0), 1.0)
    fall = (right - j) / tf.maximum(right - centre, 1.0)
    w = tf.where((j >= centre) & (j < right), fall, tf.where((j >= left) & (j <= centre), rise, 0.0))
    ctx.set(node.outputs[0], tf.cast(w, _out_dtype(node)))
