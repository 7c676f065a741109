"""Essentia's MonoLoader resampling (libsamplerate's medium sinc), streamed, at a tenth of libsamplerate's CPU.

MonoLoader resamples with libsamplerate's SRC_SINC_MEDIUM_QUALITY (its `resampleQuality` 1). Its features, and the
predictions of models trained on them, depend on that filter: soxr HQ, graphport's earlier resampler, differs from
it above about 7.2 kHz, which moved mel bands 92-95 by up to 0.7 in log space. Three details decide equality:
- the ratio is `rate_out / rate_in` in float32, as Essentia's `Real`. The float64 ratio differs by 3.4e-8
  relative, which shifts the output by 0.09 input samples after one minute (|Δ| up to 0.02 in the signal);
- the end: Essentia's streaming Resample reads 4096 samples at a time and tells libsamplerate that the input has
  ended only when its last read is short. A length that is a multiple of 4096 never gets that flush, and ends
  about half a filter early; the flush itself reads zeros past the end and stops after floor(n * ratio) outputs;
- the filter itself, which only libsamplerate has (a 22,438-entry coefficient table).

libsamplerate is slow (5.3 s of CPU for 10 minutes of 44.1 kHz audio, against 5.7 s for the seed model) and holds
the GIL. So where the rate ratio has a large numerator (the 44.1 kHz family: 160/441), `PolyphaseResampler` measures
libsamplerate's filter once, from its impulse responses at 1/160-sample resolution (40 ms), and applies it as one
matrix product per 160 outputs, with a first-order correction for the float32 ratio's slow drift (0.45-0.6 s of
CPU for 10 minutes, within 2.4e-6 of libsamplerate). Other rates (48 kHz has ratio 1/3, so one phase, too few to
measure the filter's shape between samples) use libsamplerate itself (`LibsamplerateResampler`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache

import numpy as np

ESSENTIA_READ = 4096  # Essentia's Resample takes its input 4096 samples at a time
_HALF_ZERO_CROSSINGS = 22438 / 491  # libsamplerate medium: coefficients per half filter / coefficients per crossing
_MIN_PHASES = 80  # below this many phases, the drift correction (error ~ (1 / 2P)^2) is not accurate enough


def essentia_resampler(rate_in: int, rate_out: int) -> LibsamplerateResampler | PolyphaseResampler:
    """The fastest resampler that gives MonoLoader's samples for this pair of rates."""
    if Fraction(rate_out, rate_in).numerator >= _MIN_PHASES:
        return PolyphaseResampler(rate_in, rate_out)
    return LibsamplerateResampler(rate_in, rate_out)


def _ratio(rate_in: int, rate_out: int) -> float:
    return float(np.float32(rate_out) / np.float32(rate_in))


def essentia_length(n_in: int, ratio: float) -> int:
    """Outputs MonoLoader gives for n_in inputs: all floor(n * ratio) after libsamplerate's flush; without it (n a
    multiple of 4096) those whose filter ends before the input does, i.e. floor(k / ratio) + half < n."""
    if n_in % ESSENTIA_READ:
        return int(n_in * ratio)
    half = round(_HALF_ZERO_CROSSINGS / min(ratio, 1.0)) + 1  # libsamplerate's half_filter_chan_len
    count = max(0, int(np.ceil((n_in - half) * ratio)))
    while count > 0 and np.floor((count - 1) / ratio) + half >= n_in:
        count -= 1
    while np.floor(count / ratio) + half < n_in:
        count += 1
    return count


class LibsamplerateResampler:
    """libsamplerate itself, through the `samplerate` package: exact for any rate, and slow."""

    def __init__(self, rate_in: int, rate_out: int):
        import samplerate

        self._src = samplerate.Resampler("sinc_medium", channels=1)
        self.ratio = _ratio(rate_in, rate_out)
        self.n_in = self.n_out = 0

    def process(self, mono: np.ndarray, last: bool) -> np.ndarray:
        """Resample the next block; `last` ends the stream. The `samplerate` wrapper sizes its output by the input
        it is given, so an empty call cannot flush: the end feeds zeros itself and keeps Essentia's count."""
        out = [self._src.process(mono, self.ratio, end_of_input=False)]
        self.n_in, self.n_out = self.n_in + mono.size, self.n_out + out[0].size
        need = int(self.n_in * self.ratio) - self.n_out if last and self.n_in % ESSENTIA_READ else 0
        while need > 0:
            tail = self._src.process(np.zeros(ESSENTIA_READ, np.float32), self.ratio, end_of_input=False)[:need]
            out.append(tail)
            self.n_out, need = self.n_out + tail.size, need - tail.size
        return np.concatenate(out) if len(out) > 1 else out[0]


@lru_cache(maxsize=4)
def _filter_table(rate_in: int, rate_out: int) -> tuple[np.ndarray, int]:
    """libsamplerate's filter at the exact rational ratio P/Q, sampled every 1/P input sample: table[c + i] = h(i / P)
    for |i| <= P*half, c the centre, then its derivative in t, as one float32 array [2, 2c + 1]; and `half` (in
    inputs). The zeros around the filter (P*Q + P + 1 on each side) let a block's matrix be read as a strided view.

    An impulse at input a gives outputs y_k = h(k*Q/P - a); impulses at Q consecutive inputs cover every phase.
    libsamplerate handles at most 128 channels, so they go in groups of 64.
    """
    import samplerate

    fr = Fraction(rate_out, rate_in)
    p, q = fr.numerator, fr.denominator
    half = int(np.ceil(_HALF_ZERO_CROSSINGS / min(p / q, 1.0))) + 2
    start = half + 2
    impulses = np.zeros((start + q + 2 * half + 4, q), np.float32)  # long enough for the last impulse's outputs
    impulses[start + np.arange(q), np.arange(q)] = 1
    y = np.concatenate([samplerate.Resampler("sinc_medium", channels=g.shape[1]).process(
        np.ascontiguousarray(g), p / q, end_of_input=False) for g in np.array_split(impulses, -(-q // 64), 1)], 1)
    i = q * np.arange(len(y))[:, None] - p * (start + np.arange(q))[None, :]  # p * (t_k - a)
    inside = np.abs(i) <= p * half
    table = np.zeros(2 * p * half + 1, np.float64)
    table[i[inside] + p * half] = y[inside]
    pad = np.zeros(p * q + p + 1)
    return np.stack([np.concatenate([pad, t, pad]) for t in (table, np.gradient(table) * p)]).astype(np.float32), half


class PolyphaseResampler:
    """libsamplerate's medium sinc as a matrix product: P outputs (one block) from a window of Q + 2*half + 1 inputs.

    Output k sits at input position k / ratio. With P/Q the exact rational ratio, that is Q*b + (Q*u + S)/P + d for
    block b, row u, an integer S = round(P * drift) and |d| <= 1/(2P): the rows of the block's matrix are the table
    read at the grid shifted by S, and d enters through the derivative, out = W x + d (W' x). The error of that
    first-order step is d^2/2 |h''| (measured: within 2.4e-6 of libsamplerate, over minutes of noise and a sweep;
    1.2e-3 without the correction after three minutes).
    """

    def __init__(self, rate_in: int, rate_out: int):
        fr = Fraction(rate_out, rate_in)
        self.p, self.q = fr.numerator, fr.denominator
        self.ratio = _ratio(rate_in, rate_out)
        self.drift = 1 / self.ratio - self.q / self.p  # input samples per output, from the float32 ratio
        self._table, self.half = _filter_table(rate_in, rate_out)
        u, m = np.arange(self.p)[None, :], np.arange(-self.half, self.q + self.half + 1)[:, None]
        reach = np.abs(self.q * u - self.p * m) <= self.p * (self.half + 1)  # h((Q*u - P*m) / P) may be nonzero
        # Rows in bands of about 40: each band reads only its own stretch of the window (Q/G + 2*half inputs instead
        # of Q + 2*half), which halves the products at 44.1 kHz. A band's matrix is the table read with strides
        # (-P down the window, Q across the rows), from `first` on.
        self._bands = []
        for rows in np.array_split(np.arange(self.p), max(1, self.p // 40)):
            cols = np.flatnonzero(reach[:, rows].any(1))
            first = self.q * rows[0] - self.p * (cols[0] - self.half) + (self._table.shape[1] - 1) // 2
            self._bands.append((rows[0], rows[-1] + 1, int(cols[0]), int(cols[-1]) + 1, int(first)))
        self._row_drift = (np.arange(self.p) * self.drift).astype(np.float32)
        self._weights: tuple[int, list[np.ndarray]] | None = None
        self._buf = np.zeros(self.half + self.p + 2, np.float32)  # zeros before the signal, as libsamplerate's
        self._buf_start = -self._buf.size  # input index of _buf[0]
        self.n_in = self.n_out = 0

    def process(self, mono: np.ndarray, last: bool) -> np.ndarray:
        """Resample the next block; `last` ends the stream with Essentia's length (zeros past the end)."""
        self._buf = np.concatenate([self._buf, np.asarray(mono, np.float32)])
        self.n_in += mono.size
        start_block = self.n_out // self.p
        if last:
            n_total = essentia_length(self.n_in, self.ratio)
            end_block = max(start_block, -(-n_total // self.p))
            need = self._window_end(end_block - 1) - self._buf_start
            self._buf = np.concatenate([self._buf, np.zeros(max(0, need - self._buf.size), np.float32)])
        else:  # the blocks whose windows lie inside the input so far
            end_block = max(start_block, (self.n_in - self.half - 1) // self.q)
            while end_block > start_block and self._window_end(end_block - 1) > self.n_in:
                end_block -= 1
        out = self._blocks(start_block, end_block)
        if last:
            out = out[:n_total - self.n_out]
        self.n_out += out.size
        keep = self.q * (self.n_out // self.p) + self._shift(self.n_out // self.p)[0] - self.half - 1
        self._buf, self._buf_start = self._buf[keep - self._buf_start:], keep
        return out

    def _window_end(self, b: int) -> int:
        """One past the last input that block b reads."""
        return self.q * b + int(self._shift(b)[0]) + self.q + self.half + 1

    def _shift(self, b: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whole input samples, grid steps of 1/P) of the drift at the centre of block b."""
        s = np.round(self.p * self.drift * (self.p * np.asarray(b) + self.p // 2)).astype(np.int64)
        return s // self.p, s % self.p

    def _blocks(self, b0: int, b1: int) -> np.ndarray:
        if b1 <= b0:
            return np.zeros(0, np.float32)
        blocks = np.arange(b0, b1)
        whole, step = self._shift(blocks)
        d = (self.p * self.drift * blocks - (whole + step / self.p)).astype(np.float32)
        out = np.empty((len(blocks), self.p), np.float32)
        cuts = [0, *(np.flatnonzero(np.diff(whole * self.p + step)) + 1), len(blocks)]
        with _one_blas_thread():
            for i, j in itertools.pairwise(cuts):
                first = self.q * int(blocks[i]) + int(whole[i]) - self.half - self._buf_start
                for (r0, r1, c0, c1, _), w in zip(self._bands, self._matrices(int(step[i])), strict=True):
                    windows = np.lib.stride_tricks.as_strided(self._buf[first + c0:], (j - i, c1 - c0),
                                                              (4 * self.q, 4))
                    y = windows @ w  # [blocks, 2 rows]: (W + row drift W') x, then W' x
                    band = np.multiply(y[:, r1 - r0:], d[i:j, None], out=out[i:j, r0:r1])
                    band += y[:, :r1 - r0]
        return out.reshape(-1)

    def _matrices(self, step: int) -> list[np.ndarray]:
        """Each band's [cols, 2 rows] W and W' for grid shift `step`, kept while the drift stays on it (66,000
        outputs at 44.1 kHz)."""
        if self._weights is None or self._weights[0] != step:
            view, weights = np.lib.stride_tricks.as_strided, []
            for r0, r1, c0, c1, first in self._bands:
                w, wd = (view(t[first + step:], (c1 - c0, r1 - r0), (-4 * self.p, 4 * self.q)) for t in self._table)
                # rows drift from the block's grid by u * drift (at most 1.5e-5 input samples): W + u*drift*W'
                weights.append(np.concatenate([w + self._row_drift[r0:r1] * wd, wd], 1))
            self._weights = (step, weights)
        return self._weights[1]


_blas_lock = threading.Lock()
_blas_users: list = []  # the threadpool limiter while any resampler is inside _one_blas_thread


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS at one thread while resampling: its products here are a few hundred rows, where OpenBLAS's thread
    start-up costs more than it saves (10 minutes of 44.1 kHz audio: 0.27 s of CPU on one thread; 1.0-3.4 s with
    its threads woken for each product). A counter keeps concurrent front-end threads from restoring it early."""
    from threadpoolctl import threadpool_limits

    with _blas_lock:
        if not _blas_users:
            _blas_users.append(threadpool_limits(1, user_api="blas"))
        _blas_users.append(None)
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users.pop()
            if len(_blas_users) == 1:
                _blas_users.pop().restore_original_limits()
