"""Decode any file libsndfile reads into 16 kHz mono float32 chunks (soundfile + soxr), a block at a time.

Reading in blocks and resampling with soxr's streaming resampler keeps memory flat for hour-long files. The
downmix is the channel mean, as Essentia's MonoLoader does ('mix'). Resampling uses soxr's HQ quality; Essentia's
MonoLoader resamples with libsamplerate, so features of non-16 kHz files differ from Essentia's by the resampler
alone (the front end itself matches to 1e-3 on the same 16 kHz signal).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from graphport.audio.frontend import SAMPLE_RATE
from graphport.errors import GraphportError

BLOCK_SECONDS = 30.0
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


class AudioError(GraphportError):
    """An input file cannot be turned into patches (unreadable, empty, silent, too short); the run skips it."""


def decode_chunks(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
                  block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield `path` as mono float32 chunks at `sample_rate`. Raises AudioError if libsndfile cannot read it."""
    import soundfile as sf
    import soxr

    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as e:
        raise AudioError(f"cannot decode '{path}': {e}") from None
    with f:
        if f.samplerate <= 0 or f.channels <= 0:
            raise AudioError(f"cannot decode '{path}': {f.samplerate} Hz, {f.channels} channels")
        resampler = None if f.samplerate == sample_rate else soxr.ResampleStream(
            f.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
        block = max(1, int(block_seconds * f.samplerate))
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"cannot decode '{path}' past {f.tell()} frames: {e}") from None
            last = len(data) < block
            # A matrix-vector product: data.mean(axis=1) is a strided reduction, 6x slower than decoding itself.
            mono = data @ np.full(data.shape[1], 1 / data.shape[1], np.float32) if data.shape[1] > 1 else data[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if mono.size:
                yield mono
            if last:
                return


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole file as one mono float32 array at `sample_rate`."""
    chunks = list(decode_chunks(path, sample_rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
