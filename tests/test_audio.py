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
from essentia_ref import essentia_load_and_patch, essentia_patches
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
from graphport.audio.resample import (
    ESSENTIA_READ,
    LibsamplerateResampler,
    PolyphaseResampler,
    essentia_length,
    essentia_resampler,
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


def _stereo(n: int, seed: int, rate: int) -> np.ndarray:
    """Noise on one channel, a sweep to 20 kHz on both: energy above 7.2 kHz, where resamplers differ most."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    sweep = 0.3 * np.sin(2 * np.pi * (50 * t + 10000 * t**2 / t[-1]))
    return np.stack([sweep + 0.1 * rng.standard_normal(n), sweep], 1)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_front_end_equals_monoloader_on_stereo(tmp_path, rate):
    """The whole front end on a 44.1 or 48 kHz stereo file against MonoLoader + Essentia's network: downmix, then
    libsamplerate's medium sinc with Essentia's float32 ratio and its end rule (215 * 4096 samples never get
    libsamplerate's flush in Essentia, so they resample to 45 fewer samples; 1000 more do get it). Measured: samples
    within 5.7e-7 at 44.1 kHz, 5.1e-7 at 48 kHz (whose ratio 1/3 shows libsamplerate's filter only at whole samples:
    the fast path reads it between them), 3e-8 with libsamplerate itself; log-mel within 9.3e-5 (the front end's own
    float32 noise). Each alternative fails at 44.1 kHz: soxr HQ (the previous resampler) by 0.22 in the samples and
    1.9 in log-mel (mean 0.53 over bands 92-95), and 46 samples too many on the first file; libsamplerate with the
    float64 ratio by 3.7e-3 and 2.8e-3; its 'sinc_fastest' by 0.25 and 2.2."""
    paths = []
    for i, n in enumerate([215 * 4096, 215 * 4096 + 1000]):
        paths.append(tmp_path / f"stereo_{i}.wav")
        sf.write(paths[-1], _stereo(n, i, rate), rate, subtype="PCM_16")
    for path, (ref_samples, ref_frames, ref_patches) in zip(paths, essentia_load_and_patch(paths)):
        x = load_audio(path)
        assert x.shape == ref_samples.shape, path
        assert np.abs(x - ref_samples).max() <= 1e-5, path
        frames = mel_frames(x)
        assert frames.shape == ref_frames.shape, path
        assert np.abs(frames - ref_frames).max() <= LOG_ATOL, path
        assert make_patches(frames).shape == ref_patches.shape, path


def _resample(resampler, x: np.ndarray, block: int) -> np.ndarray:
    return np.concatenate([resampler.process(x[i:i + block], i + block >= len(x)) for i in range(0, len(x), block)])


@pytest.mark.parametrize(("rate", "minutes"), [(44100, 3), (22050, 3), (11025, 3), (48000, 5), (32000, 1),
                                               (96000, 1), (8000, 1)])
def test_polyphase_resampler_equals_libsamplerate(rate, minutes):
    """The fast path against libsamplerate itself, on full-scale noise and noise + sweep: lengths with and without
    Essentia's flush, any block size, and minutes over which the float32 ratio drifts (0.43 input samples in five
    minutes at 48 kHz, whose ratio 1/3 has one phase: the drift reads the filter between its samples). Measured:
    within 1.7e-6 everywhere (1.2e-3 without the drift correction after three minutes at 44.1 kHz)."""
    rng = np.random.default_rng(5)
    assert isinstance(essentia_resampler(rate, SR), PolyphaseResampler)
    long = rate * 60 * minutes
    for n, blocks in [(100, [100]), (ESSENTIA_READ * 30, [ESSENTIA_READ * 30, 9999]),
                      (ESSENTIA_READ * 30 + 7, [777]), (long // ESSENTIA_READ * ESSENTIA_READ, [rate * 30]),
                      (long + 11, [long + 11, rate * 30, 65536 + 1])]:
        t = np.arange(n) / rate
        sweep = np.sin(2 * np.pi * (50 * t + 0.2 * rate * t**2 / t[-1]))
        for x in (rng.uniform(-1, 1, n), 0.5 * sweep + 0.5 * rng.uniform(-1, 1, n)):
            x = x.astype(np.float32)
            exact = _resample(LibsamplerateResampler(rate, SR), x, n)
            for block in blocks:
                fast = _resample(PolyphaseResampler(rate, SR), x, block)
                assert fast.shape == exact.shape, (n, block)
                assert np.abs(fast - exact).max() <= 2.5e-6, (n, block)


def test_odd_rates_use_libsamplerate():
    """A reduced ratio with a large numerator or denominator (16000/44056 = 2000/5507) would need huge block
    matrices: libsamplerate itself resamples it."""
    assert isinstance(essentia_resampler(44056, SR), LibsamplerateResampler)


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_length_without_flush_is_libsamplerates(rate):
    """Lengths that are multiples of 4096 end where libsamplerate stops without a flush (the rule `PolyphaseResampler`
    computes), for ratios below and above 1."""
    for n in (ESSENTIA_READ, 3 * ESSENTIA_READ, 100 * ESSENTIA_READ):
        resampler = LibsamplerateResampler(rate, SR)
        assert len(_resample(resampler, np.zeros(n, np.float32), 50000)) == essentia_length(n, resampler.ratio)


@pytest.mark.parametrize("content", [b"", b"not audio at all" * 100, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_undecodable_files_raise_audio_error(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError):
        load_audio(path)
    with pytest.raises(AudioError):
        load_audio(tmp_path / "missing.wav")
