"""Audio in, Essentia-compatible mel patches out: decode.py (soundfile), resample.py (MonoLoader's resampling),
frontend.py (TensorflowInputMusiCNN)."""

from graphport.audio.decode import AUDIO_EXTENSIONS, AudioError, decode_chunks, load_audio
from graphport.audio.frontend import (
    LAST_PATCH_MODES,
    N_BANDS,
    PATCH_HOP,
    PATCH_SIZE,
    SAMPLE_RATE,
    MelStream,
    PatchStream,
    frame_count,
    make_patches,
    mel_bands,
    mel_filterbank,
    mel_frames,
    patch_count,
    stream_patches,
)

__all__ = ["AUDIO_EXTENSIONS", "LAST_PATCH_MODES", "N_BANDS", "PATCH_HOP", "PATCH_SIZE", "SAMPLE_RATE", "AudioError",
           "MelStream", "PatchStream", "decode_chunks", "frame_count", "load_audio", "make_patches", "mel_bands",
           "mel_filterbank", "mel_frames", "patch_count", "stream_patches"]
