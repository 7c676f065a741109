"""The mel front end of Essentia's TensorflowInputMusiCNN and the patching of TensorflowPredictEffnetDiscogs, in numpy.

Models converted from Essentia's ONNX releases were trained on these exact features, so graphport reproduces them
instead of using a generic mel library (librosa's defaults differ in window symmetry, band edges and scaling).
What Essentia does, checked against essentia-tensorflow 2.1b6 (tests/test_audio.py keeps it honest):

- FrameCutter (streaming, the defaults TensorflowPredictEffnetDiscogs uses): frame 512, hop 256, the first frame
  centred on sample 0 (256 zeros before the signal), frames while their start is before the end of the signal, the
  last ones zero-padded. So an n-sample signal gives 1 + ceil(n / 256) frames (0 for n = 0).
- Windowing: symmetric Hann (0.5 - 0.5 cos(2 pi k / 511)), not normalised; its zero-phase rotation does not change
  the magnitude spectrum, so it is left out.
- Spectrum: |rfft| (257 bins); MelBands squares it (its `type` is 'power'). Computed in float32, as Essentia does.
- MelBands: 96 triangles, edges equally spaced on Slaney's mel scale from 0 to 8000 Hz, triangles linear in Hz,
  'unit_tri' normalisation (each triangle has area 1 in Hz: peak 2 / (f_hi - f_lo)).
- log10(1 + 10000 x).
- VectorRealToTensor: patches of `patch_size` frames every `patch_hop` frames. 'discard' (the default of
  TensorflowPredictEffnetDiscogs) drops the frames after the last full patch, so fewer than `patch_size` frames give
  no patch at all; 'repeat' adds one last patch made of the remaining frames repeated cyclically.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
FRAME_SIZE = 512
HOP_SIZE = 256
N_BANDS = 96
PATCH_SIZE = 128
PATCH_HOP = 62
LAST_PATCH_MODES = ("discard", "repeat")
BLOCK_FRAMES = 256  # frames per vectorised step of mel_bands: [256, 512] float32 is 512 KiB, cache-sized


def _hz_to_mel(f: float) -> np.float32:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above; float32 as in Essentia."""
    f = np.float32(f)
    if f < 1000:
        return np.float32(f / np.float32(200.0 / 3.0))
    return np.float32(15) + np.float32(np.log(np.float32(f / np.float32(1000)))) / np.float32(np.log(6.4) / 27)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float32)
    log_part = np.float32(1000) * np.exp(np.float32(np.log(6.4) / 27) * (m - np.float32(15)))
    return np.where(m < 15, m * np.float32(200.0 / 3.0), log_part).astype(np.float32)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """[257, 96] float32 matrix: power spectrum @ matrix = Essentia's MelBands output.

    Computed in float32 the way Essentia does, band edges included: they are a running float32 sum of the mel step,
    and that rounding moves the small coefficients at triangle feet by up to 1.5 %, which a loud narrow-band signal
    (a sine sweep) turns into 2e-3 in log space if it is done in float64.
    """
    lo, hi = _hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2)
    steps = np.full(N_BANDS + 2, np.float32((hi - lo) / np.float32(N_BANDS + 1)), np.float32)
    steps[0] = lo
    edges = _mel_to_hz(np.cumsum(steps, dtype=np.float32))  # cumsum adds sequentially, as Essentia's loop does
    freqs = np.arange(FRAME_SIZE // 2 + 1, dtype=np.float32) * np.float32(SAMPLE_RATE / 2 / (FRAME_SIZE // 2))
    lo, mid, hi = (edges[i:i + N_BANDS, None] for i in range(3))
    rising = np.where((freqs >= lo) & (freqs < mid), (freqs - lo) / (mid - lo), np.float32(0))
    falling = np.where((freqs >= mid) & (freqs < hi), (hi - freqs) / (hi - mid), np.float32(0))
    return np.ascontiguousarray(((rising + falling) * (np.float32(2) / (hi - lo))).T, dtype=np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_SIZE) / (FRAME_SIZE - 1))).astype(np.float32)


def frame_count(n_samples: int) -> int:
    """Frames Essentia's FrameCutter cuts from `n_samples` samples (first frame centred on sample 0)."""
    return 0 if n_samples <= 0 else 1 + -(-n_samples // HOP_SIZE)


@lru_cache(maxsize=1)
def _triangles() -> tuple[tuple[int, int, np.ndarray], ...]:
    """Each band as (first bin, end bin, its weights): 502 of the 257 x 96 coefficients are nonzero (at most 15 per
    band), so a product per band does 1/50 of a dense matmul's work and never wakes BLAS's thread pool, which on
    small blocks cost more than the product itself (measured 0.99 s vs 0.07 s CPU for 10 minutes of audio)."""
    fb = mel_filterbank()
    bands = []
    for b in range(N_BANDS):
        nz = np.flatnonzero(fb[:, b])
        bands.append((int(nz[0]), int(nz[-1]) + 1, np.ascontiguousarray(fb[nz[0]:nz[-1] + 1, b])))
    return tuple(bands)


def mel_bands(frames: np.ndarray) -> np.ndarray:
    """[n, 512] time frames -> [n, 96] log-mel bands (TensorflowInputMusiCNN.compute, vectorised).

    Works through BLOCK_FRAMES frames at a time in float32: a block's frames, spectrum and power stay in cache, and
    numpy's float32 FFT over 37,500 frames at once is 6x slower than over blocks of 256 (measured). In such blocks
    it is as fast as scipy.fft (0.08 s vs 0.07 s CPU for 10 minutes of audio; scipy's workers=2 gained nothing on 2
    cores), and scipy.fft would add about 0.5 s of imports to every start.
    """
    frames = np.asarray(frames, np.float32)
    mel = np.empty((N_BANDS, len(frames)), np.float32)  # band-major: each band's row is written contiguously
    for start in range(0, len(frames), BLOCK_FRAMES):
        spectrum = np.fft.rfft(frames[start:start + BLOCK_FRAMES] * _window(), axis=-1)
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        power = np.ascontiguousarray(power.T)  # [257, block]: a band's bins are contiguous rows
        for b, (lo, hi, weights) in enumerate(_triangles()):
            np.dot(weights, power[lo:hi], out=mel[b, start:start + BLOCK_FRAMES])
    mel *= np.float32(10000)
    mel += np.float32(1)
    return np.log10(mel, out=mel).T


def mel_frames(signal: np.ndarray) -> np.ndarray:
    """All mel frames of a whole 16 kHz mono signal: [frame_count(len(signal)), 96] float32."""
    stream = MelStream()
    parts = [*stream.feed(signal), *stream.finish()]
    return np.concatenate(parts) if parts else np.zeros((0, N_BANDS), np.float32)


def patch_count(n_frames: int, patch_size: int = PATCH_SIZE, patch_hop: int = PATCH_HOP,
                last_patch_mode: str = "discard") -> int:
    """Patches VectorRealToTensor makes from `n_frames` frames."""
    full = 0 if n_frames < patch_size else 1 + (n_frames - patch_size) // patch_hop
    return full + int(last_patch_mode == "repeat" and n_frames > full * patch_hop)


def make_patches(frames: np.ndarray, patch_size: int = PATCH_SIZE, patch_hop: int = PATCH_HOP,
                 last_patch_mode: str = "discard") -> np.ndarray:
    """All patches of a whole frame sequence: [patch_count, patch_size, 96] float32."""
    stream = PatchStream(patch_size, patch_hop, last_patch_mode)
    parts = [*stream.feed(frames), *stream.finish()]
    return np.concatenate(parts) if parts else np.zeros((0, patch_size, N_BANDS), np.float32)


@dataclass
class MelStream:
    """Mel frames of a signal that arrives in chunks, so a long file never sits in memory whole."""

    _buf: np.ndarray = field(default_factory=lambda: np.zeros(FRAME_SIZE // 2, np.float32))
    n_samples: int = 0
    n_frames: int = 0

    def feed(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        """Yield the frames that `chunk` completes (every frame whose 512 samples are all known)."""
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        self.n_samples += chunk.size
        self._buf = np.concatenate([self._buf, chunk])
        n = 0 if self._buf.size < FRAME_SIZE else 1 + (self._buf.size - FRAME_SIZE) // HOP_SIZE
        if n:
            yield from self._emit(n)

    def finish(self) -> Iterator[np.ndarray]:
        """Yield the last frames, zero-padded at the end as FrameCutter pads them."""
        n = frame_count(self.n_samples) - self.n_frames
        if n > 0:
            need = (n - 1) * HOP_SIZE + FRAME_SIZE
            self._buf = np.concatenate([self._buf, np.zeros(max(0, need - self._buf.size), np.float32)])
            yield from self._emit(n)

    def _emit(self, n: int) -> Iterator[np.ndarray]:
        yield mel_bands(np.lib.stride_tricks.sliding_window_view(self._buf, FRAME_SIZE)[::HOP_SIZE][:n])
        self.n_frames += n
        self._buf = self._buf[n * HOP_SIZE:].copy()


class PatchStream:
    """Patches of a frame sequence that arrives in pieces (VectorRealToTensor's rules, see the module doc)."""

    def __init__(self, patch_size: int = PATCH_SIZE, patch_hop: int = PATCH_HOP, last_patch_mode: str = "discard"):
        if last_patch_mode not in LAST_PATCH_MODES:
            raise ValueError(f"last_patch_mode must be one of {LAST_PATCH_MODES}, got {last_patch_mode!r}")
        if not 0 < patch_hop <= patch_size:  # Essentia refuses a hop larger than the patch too
            raise ValueError(f"patch_hop must be in 1..patch_size ({patch_size}), got {patch_hop}")
        self.size, self.hop, self.mode = patch_size, patch_hop, last_patch_mode
        self._buf = np.zeros((0, N_BANDS), np.float32)

    def feed(self, frames: np.ndarray) -> Iterator[np.ndarray]:
        """Yield [k, patch_size, 96] arrays of the full patches these frames complete."""
        self._buf = np.concatenate([self._buf, np.asarray(frames, np.float32)])
        if len(self._buf) < self.size:
            return
        n = 1 + (len(self._buf) - self.size) // self.hop
        view = np.lib.stride_tricks.sliding_window_view(self._buf, self.size, axis=0)[::self.hop][:n]
        yield np.ascontiguousarray(view.transpose(0, 2, 1))
        self._buf = self._buf[n * self.hop:]

    def finish(self) -> Iterator[np.ndarray]:
        """In 'repeat' mode, yield the last patch: the remaining frames repeated up to patch_size."""
        if self.mode == "repeat" and len(self._buf):
            yield self._buf[np.arange(self.size) % len(self._buf)][None]
        self._buf = self._buf[:0]


def stream_patches(chunks: Iterable[np.ndarray], patch_size: int = PATCH_SIZE, patch_hop: int = PATCH_HOP,
                   last_patch_mode: str = "discard") -> Iterator[np.ndarray]:
    """16 kHz mono chunks -> [k, patch_size, 96] patch arrays, with bounded memory."""
    mel, patcher = MelStream(), PatchStream(patch_size, patch_hop, last_patch_mode)
    for chunk in chunks:
        for frames in mel.feed(chunk):
            yield from patcher.feed(frames)
    for frames in mel.finish():
        yield from patcher.feed(frames)
    yield from patcher.finish()
