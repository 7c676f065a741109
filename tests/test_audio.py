"""graphport.audio against Essentia's own TensorflowInputMusiCNN network (run in the Essentia venv), never itself.

Signals are made here: a log sine sweep, white and pink-ish noise, a quiet tone, speech-like bursts (espeak-ng when
it is installed), at lengths that hit FrameCutter's and VectorRealToTensor's edge cases. Each goes through a file
and graphport's decoder, so the reference and graphport see the same 16 kHz samples.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from essentia_ref import essentia_patches
from scipy.signal import resample_poly

from graphport.audio import (
    AudioError,
    frame_count,
    load_audio,
    make_patches,
    mel_frames,
    patch_count,
    stream_patches,
)

SR = 16000
LOG_ATOL = 1e-3


def _sweep(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0, f1 = 30.0, 7900.0
    k = np.log(f1 / f0) / seconds
    return (0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def _signals(tmp_path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    white = 0.3 * rng.standard_normal(int(12.3 * SR))
    pink = np.cumsum(rng.standard_normal(9 * SR))
    pink = 0.5 * (pink - np.convolve(pink, np.ones(400) / 400, "same")) / np.abs(pink).max()
    t = np.arange(5 * SR) / SR
    bursts = np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0.3) * 0.4
    signals = {
        "sweep": _sweep(20.0),
        "white": white,
        "pink": pink,
        "quiet_tone": 1e-4 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR),
        "bursts": bursts,
        "one_patch_exactly": 0.1 * rng.standard_normal(127 * 256),  # 128 frames
        "one_frame_short": 0.1 * rng.standard_normal(127 * 256 - 256),  # 127 frames: no patch in 'discard'
        "tiny": 0.1 * rng.standard_normal(100),
    }
    if shutil.which("espeak-ng"):
        wav = tmp_path / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "graphport turns audio into mel patches"], check=True)
        signals["speech"] = load_audio(wav)
    out = {}
    for name, x in signals.items():  # through a file and graphport's decoder, as `predict` reads audio
        path = tmp_path / f"{name}.wav"
        sf.write(path, np.asarray(x, np.float32), SR, subtype="FLOAT")
        out[name] = load_audio(path)
    return out


@pytest.fixture(scope="module")
def signals(tmp_path_factory):
    return _signals(tmp_path_factory.mktemp("audio"))


@pytest.mark.parametrize("mode,hop", [("discard", 62), ("repeat", 62), ("discard", 128), ("repeat", 33)])
def test_mel_patches_equal_essentia(signals, mode, hop):
    names = list(signals)
    refs = essentia_patches([signals[n] for n in names], patch_hop=hop, last_patch_mode=mode)
    for name, (ref_frames, ref_patches) in zip(names, refs):
        x = signals[name]
        frames = mel_frames(x)
        assert frames.shape == ref_frames.shape, name
        assert frame_count(len(x)) == len(ref_frames), name
        if len(ref_frames):
            assert np.abs(frames - ref_frames).max() <= LOG_ATOL, name
        patches = make_patches(frames, patch_hop=hop, last_patch_mode=mode)
        assert patches.shape == ref_patches.shape, (name, patches.shape, ref_patches.shape)
        assert patch_count(len(frames), patch_hop=hop, last_patch_mode=mode) == len(ref_patches), name
        if len(ref_patches):
            assert np.abs(patches - ref_patches).max() <= LOG_ATOL, name
        # Streaming in odd-sized chunks gives the same patches as the whole signal.
        chunks = [x[i:i + 12345] for i in range(0, len(x), 12345)]
        streamed = list(stream_patches(chunks, patch_hop=hop, last_patch_mode=mode))
        streamed = np.concatenate(streamed) if streamed else np.zeros((0, 128, 96), np.float32)
        assert streamed.shape == ref_patches.shape, name
        if len(ref_patches):
            assert np.abs(streamed - ref_patches).max() <= LOG_ATOL, name


def test_decode_downmix_and_resample(tmp_path):
    """A 44.1 kHz stereo file decodes to the channel mean resampled to 16 kHz (scipy's polyphase as reference)."""
    sr = 44100
    t = np.arange(int(2.5 * sr)) / sr
    left, right = 0.6 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1234 * t)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], 1), sr, subtype="PCM_24")
    x = load_audio(path)
    ref = resample_poly((left + right) / 2, 160, 441)
    assert abs(len(x) - len(ref)) <= 1
    n = min(len(x), len(ref))
    assert np.abs(x[1000:n - 1000] - ref[1000:n - 1000]).max() < 2e-3
    odd = tmp_path / "odd.wav"  # an odd rate, mono 8-bit
    sf.write(odd, left[: 22050].astype(np.float32), 11025, subtype="PCM_U8")
    assert abs(len(load_audio(odd)) - 2 * SR) <= 1


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 100, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_undecodable_files_raise_audio_error(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError):
        load_audio(path)
    with pytest.raises(AudioError):
        load_audio(tmp_path / "missing.wav")
