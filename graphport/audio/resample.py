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

libsamplerate is slow (5.3 s of CPU for 10 minutes of 44.1 kHz audio, 7.3 s at 48 kHz, against 5.7 s for the seed
model) and holds the GIL. So for the ratios of common rates `PolyphaseResampler` computes the same filter as matrix
products, with a first-order correction for the float32 ratio's slow drift: 0.45-0.55 s of CPU for 10 minutes at
44.1 or 48 kHz, within 1.7e-6 of libsamplerate on full-scale noise. The filter is libsamplerate's own table,
measured once from its impulse responses (`_coefficients`), stretched as libsamplerate stretches it for the ratio
(`_filter_table`): a ratio with few phases (48 kHz: 1/3, one phase) never shows the filter's shape between
samples in its impulse responses, yet the drift moves its outputs across that shape (0.86 input samples in 10
minutes at 48 kHz). Odd rates (a reduced ratio past 1000/1000) use libsamplerate itself (`LibsamplerateResampler`).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache

import numpy as np

ESSENTIA_READ = 4096  # Essentia's Resample takes its input 4096 samples at a time
_TABLE_HALF, _TABLE_STEP = 22438, 491  # libsamplerate medium: coefficients per half filter, per zero crossing
_HALF_ZERO_CROSSINGS = _TABLE_HALF / _TABLE_STEP
_FP_ONE = 4096  # libsamplerate's fixed point for positions in its table: 12 fractional bits
# Table steps per input sample, at least: the drift correction's error goes as (r / L)^2 for a filter stretched by
# a ratio r < 1. Measured on two minutes of full-scale noise: 1.3e-6 at 44.1 and 48 kHz with L = 1280 r or 1920 r
# (3.3e-6 at 44.1 kHz with L = 160, 2.7e-6 at 48 kHz with 160; what remains is libsamplerate's rounding of each
# output's phase, and float32). Upsampling keeps the whole input band at full amplitude: 11025 Hz gives 2.5e-6 with
# L = 1280, 2.0e-6 with 1920, 1.3e-6 with 3840.
_RESOLUTION, _RESOLUTION_UP = 1280, 3840
_BAND_ROWS = 40  # rows per matrix product: fewer inputs per row than a whole block's window, still BLAS-sized
_MAX_TERMS = 1000  # reduced ratios with a larger numerator or denominator (odd rates) use libsamplerate itself


def essentia_resampler(rate_in: int, rate_out: int) -> LibsamplerateResampler | PolyphaseResampler:
    """The fastest resampler that gives MonoLoader's samples for this pair of rates: `PolyphaseResampler` for any
    ratio P/Q of common rates, libsamplerate for odd ones, whose block matrices (Q + 2*half inputs by P) and table
    (its resolution a multiple of P) would grow past what the fast path saves."""
    fr = Fraction(rate_out, rate_in)
    if max(fr.numerator, fr.denominator) <= _MAX_TERMS:
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


@lru_cache(maxsize=1)
def _coefficients() -> np.ndarray:
    """libsamplerate's medium coefficient table h[0..22438], measured: upsampling by 491/3 puts output k at 3k/491
    input samples, so an impulse at input a gives y_k = h[|491a - 3k|] exactly (each position falls on an entry,
    where the table's linear interpolation adds nothing, and the gain is 1 above ratio 1). Impulses at three
    consecutive inputs cover the three residues of 491a - 3k mod 3."""
    import samplerate

    start = int(_HALF_ZERO_CROSSINGS) + 4
    impulses = np.zeros((3 * start + 8, 3), np.float32)  # outputs stop half a filter early
    impulses[start + np.arange(3), np.arange(3)] = 1
    y = samplerate.Resampler("sinc_medium", channels=3).process(impulses, _TABLE_STEP / 3, end_of_input=False)
    index = np.abs(_TABLE_STEP * (start + np.arange(3))[None, :] - 3 * np.arange(len(y))[:, None])
    inside = index <= _TABLE_HALF
    h = np.zeros(_TABLE_HALF + 1)
    h[index[inside]] = y[inside]
    return h


@lru_cache(maxsize=4)
def _filter_table(ratio: float, resolution: int) -> tuple[np.ndarray, int]:
    """libsamplerate's filter at `ratio`, the weight of an input t samples from the output, sampled every
    1/resolution input sample: table[c + i] = g(i / L) for |i| <= L*half, c the centre, then its derivative in t, as
    one float32 array [2, 2c + 1]; and `half` (in inputs).

    libsamplerate reads its table (`_coefficients`) in 12-bit fixed point, interpolating linearly, at I / 4096
    entries per input sample with I = round(491 * min(ratio, 1) * 4096) (the filter stretched by the ratio when
    downsampling), and scales by min(ratio, 1): so g(t) = min(ratio, 1) * h(|t| * I / 4096), a continuous shape
    that a ratio with one phase (48 kHz: 1/3) never shows in its impulse responses, but the float32 ratio's drift
    does reach. It also rounds each output's phase to 1/I input samples; that (at most 7.5e-7 samples at 48 kHz)
    is left out.
    """
    scale = min(ratio, 1.0)
    step = round(_TABLE_STEP * scale * _FP_ONE) / _FP_ONE  # table entries per input sample
    half = int(np.ceil(_HALF_ZERO_CROSSINGS / scale)) + 2
    h = _coefficients()
    t = np.abs(np.arange(-resolution * half, resolution * half + 1)) * (step / resolution)
    table = scale * np.interp(t, np.arange(h.size), h, right=0.0)
    return np.stack([table, np.gradient(table) * resolution]).astype(np.float32), half


def _bands(p: int, q: int, half: int) -> list[tuple[int, int, int, int]]:
    """(first row, end row, first column, end column) of each band of at most 40 rows in a block of p outputs from
    a window of q + 2*half + 1 inputs: each band reads only the inputs its rows' filters reach."""
    u, m = np.arange(p)[None, :], np.arange(-half, q + half + 1)[:, None]
    reach = np.abs(q * u - p * m) <= p * (half + 1)  # input m may be inside row u's filter
    bands = []
    for rows in np.array_split(np.arange(p), -(-p // _BAND_ROWS)):
        cols = np.flatnonzero(reach[:, rows].any(1))
        bands.append((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    return bands


class PolyphaseResampler:
    """libsamplerate's medium sinc as matrix products: P outputs (one block) from a window of Q + 2*half + 1 inputs,
    with P/Q the exact rational ratio scaled up (1/3 -> 125/375 at 48 kHz) until each band of rows reads no more
    inputs than a block advances by: the windows of successive blocks are then a strided view that BLAS takes as
    is (on overlapping rows numpy would fall back to its own loop).

    Output k sits at input position k / ratio. That is Q*b + (L*Q*u/P + S)/L + d for block b, row u, the table's
    resolution L (a multiple of the reduced ratio's numerator, at least 1280 * ratio, 3840 upsampling), an integer
    S = round(L * drift) and |d| <= 1/(2L): the rows of the block's matrix are the table read at the grid shifted
    by S, and d enters through the derivative, out = W x + d (W' x). Measured against libsamplerate on full-scale
    noise and noise + sweep, 10 minutes at 48 kHz, 1 to 3 at 44.1, 22.05, 11.025, 32, 96 and 8 kHz, any block
    size, with and without the end flush: within 1.7e-6 (1.2e-3 without the drift correction after three minutes
    at 44.1 kHz).
    """

    def __init__(self, rate_in: int, rate_out: int):
        fr = Fraction(rate_out, rate_in)
        self.ratio = _ratio(rate_in, rate_out)
        self.resolution = fr.numerator * math.ceil((_RESOLUTION * fr if fr < 1 else _RESOLUTION_UP) / fr.numerator)
        table, self.half = _filter_table(self.ratio, self.resolution)
        scale = -(-(2 * self.half + 1) // fr.denominator)  # a lower bound: a block must span the filter
        while True:
            self.p, self.q = scale * fr.numerator, scale * fr.denominator
            bands = _bands(self.p, self.q, self.half)
            if all(c1 - c0 <= self.q for _, _, c0, c1 in bands):
                break
            scale += 1
        self.drift = 1 / self.ratio - self.q / self.p  # input samples per output, from the float32 ratio
        # A band's matrix is the table read with strides (-L down the window, L*Q/P across the rows) from `first` on,
        # plus the grid shift (0 <= S mod L < L); the table is padded with zeros to keep every such read inside it.
        step_l, step_r = self.resolution, self.resolution * self.q // self.p
        centre = (table.shape[1] - 1) // 2
        firsts = [step_r * r0 - step_l * (c0 - self.half) + centre for r0, _, c0, _ in bands]
        low = min(f - step_l * (c1 - c0 - 1) for f, (_, _, c0, c1) in zip(firsts, bands, strict=True))
        high = max(f + step_l - 1 + step_r * (r1 - r0 - 1) for f, (r0, r1, _, _) in zip(firsts, bands, strict=True))
        pad_l, pad_r = max(0, -low), max(0, high - table.shape[1] + 1)
        table = np.pad(table, ((0, 0), (pad_l, pad_r + -(table.shape[1] + pad_l + pad_r) % step_l)))
        self._bands = [(*band, f + pad_l) for band, f in zip(bands, firsts, strict=True)]
        # Phase-major and reversed, so that a matrix row, T[a - L*j] for j = 0, 1, ..., is one contiguous run (each
        # rebuild then copies runs instead of gathering one float per cache line): rows[φ, k] = T[φ + L*(K - 1 - k)].
        # W and W' one after the other, so that one gather builds a band's [2 rows, cols] matrix.
        self._run = table.shape[1] // step_l
        rows = table.reshape(2, self._run, step_l).transpose(0, 2, 1)[:, :, ::-1].reshape(-1)
        self._runs = [_windows(rows, rows.size - (c1 - c0) + 1, c1 - c0, 1) for _, _, c0, c1 in bands]
        # rows drift from the block's grid by u * drift (at most 1.2e-5 input samples), which adds to d
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
        """(whole input samples, grid steps of 1/L) of the drift at the centre of block b."""
        s = np.round(self.resolution * self.drift * (self.p * np.asarray(b) + self.p // 2)).astype(np.int64)
        return s // self.resolution, s % self.resolution

    def _blocks(self, b0: int, b1: int) -> np.ndarray:
        if b1 <= b0:
            return np.zeros(0, np.float32)
        blocks = np.arange(b0, b1)
        whole, step = self._shift(blocks)
        d = (self.p * self.drift * blocks - (whole + step / self.resolution)).astype(np.float32)
        d = d[:, None] + self._row_drift
        out = np.empty((len(blocks), self.p), np.float32)
        cuts = [0, *(np.flatnonzero(np.diff(whole * self.resolution + step)) + 1), len(blocks)]
        with _one_blas_thread():
            for i, j in itertools.pairwise(cuts):
                first = self.q * int(blocks[i]) + int(whole[i]) - self.half - self._buf_start
                for (r0, r1, c0, c1, _), w in zip(self._bands, self._matrices(int(step[i])), strict=True):
                    windows = _windows(self._buf, j - i, c1 - c0, self.q, first + c0)
                    y = windows @ w  # [blocks, 2 rows]: W x, then W' x
                    band = np.multiply(y[:, r1 - r0:], d[i:j, r0:r1], out=out[i:j, r0:r1])
                    band += y[:, :r1 - r0]
        return out.reshape(-1)

    def _matrices(self, step: int) -> list[np.ndarray]:
        """Each band's [cols, 2 rows] W and W' for grid shift `step`, kept while the drift stays on it (22,000
        outputs at 44.1 kHz, 26,000 at 48 kHz)."""
        if self._weights is None or self._weights[0] != step:
            weights, runs = [], self._run
            for (r0, r1, _, _, first), view in zip(self._bands, self._runs, strict=True):
                a = first + step + self.resolution * self.q // self.p * np.arange(r1 - r0)  # T index of column 0
                starts = a % self.resolution * runs + runs - 1 - a // self.resolution
                weights.append(view[np.concatenate([starts, starts + runs * self.resolution])].T)
            self._weights = (step, weights)
        return self._weights[1]


def _windows(x: np.ndarray, count: int, size: int, step: int, start: int = 0) -> np.ndarray:
    """[count, size] view of float32 x: row i is x[start + i*step:][:size]. numpy checks that it lies inside x (which
    as_strided does not), and builds it in a microsecond (as_strided: 20)."""
    return np.ndarray((count, size), np.float32, x, 4 * start, (4 * step, 4))


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
