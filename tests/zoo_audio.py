"""Audio encoders from Hugging Face transformers' own code (AST, wav2vec2, HuBERT, WavLM, data2vec-audio, SEW,
UniSpeech-SAT, the Whisper and Speech2Text encoders, CLAP's HTSAT audio tower, EnCodec's SEANet encoder), built
from small config objects with random weights: nothing is downloaded (no `from_pretrained`, no hub configs).

These are the encoders people actually export to ONNX for audio tagging, speech embeddings and codecs, and their
graphs carry what a CNN zoo does not: feature extractors of strided 1-D convolutions over raw samples (with
GroupNorm or LayerNorm over channels), grouped and weight-normed positional convolutions with same-padding trims,
relative position biases computed from the runtime length (WavLM buckets, gated), squeeze/upsample round trips over
time (SEW), sinusoidal and learned position tables sliced to the input length, patch embeddings over spectrograms
with overlapping strides (AST), Swin windows over a bicubically resized mel image (CLAP) and causal reflect-padded
convolutions followed by an LSTM (EnCodec).

Each entry keeps the real model's layout but is shrunk (hidden size 32-64, 1-2 layers, 2-4 heads, inputs of a few
hundred frames or a few thousand samples) so export and conversion take seconds. Parameters the library initialises
to a constant (LayerNorm gamma/beta, zero biases) are randomised and BatchNorm statistics calibrated, so a bug in
any of them shows up in the outputs. Attention is the eager implementation, spec-augment masking is off and the
model is in eval mode, so the forward is deterministic. `build()` returns a module whose forward takes one float32
tensor (`shape` is its shape without the batch dim) and returns one tensor; `axes` names the input dims besides the
batch that may vary at run time (empty where the model needs a fixed length).

transformers may import torchvision, whose wheel here is a CUDA build; `import_timm()` makes it importable first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch_models import calibrate
from zoo_models import import_timm, randomize_constants


@dataclass(frozen=True)
class AudioEntry:
    """One zoo model: `build()` -> eval-mode module of one tensor, its example input shape without the batch dim,
    the ONNX input name and the dynamic input axes besides {0: "batch"}."""

    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    input_name: str
    axes: dict[int, str] = field(default_factory=dict)


class _Pick(nn.Module):
    """Calls a transformers model on one tensor and returns one field of its output (the output itself if None)."""

    def __init__(self, model: nn.Module, field_name: str | None) -> None:
        super().__init__()
        self.model = model
        self.field_name = field_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if self.field_name is None else getattr(out, self.field_name)


def _transformers() -> Any:
    import_timm()
    import transformers
    return transformers


def _finish(model: nn.Module, field_name: str | None, shape: tuple[int, ...] | None = None) -> nn.Module:
    """Randomise constant-initialised parameters, wrap, calibrate BatchNorm when there is one, switch to eval."""
    net = _Pick(randomize_constants(model), field_name)
    if shape is not None:
        return calibrate(net, shape, steps=5, batch=8)
    return net.eval()


# Raw-audio feature extractor shared by the wav2vec2 family: 3 strided convs (5, 2, 2) -> 1 frame per 20 samples.
_W2V_COMMON: dict[str, Any] = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "conv_dim": (32, 32, 32), "conv_stride": (5, 2, 2), "conv_kernel": (10, 3, 3),
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
    "apply_spec_augment": False, "mask_time_prob": 0.0, "mask_feature_prob": 0.0, "layerdrop": 0.0,
    "attn_implementation": "eager",
}
RAW = (1600,)


def _ast() -> nn.Module:
    """AST (ASTForAudioClassification): overlapping 16x16 patches of a [time, mel] log-mel (stride 10), CLS and
    distillation tokens, learned position table, mean of the two tokens into the classifier."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         patch_size=16, frequency_stride=10, time_stride=10, max_length=64, num_mel_bins=32,
                         num_labels=5, initializer_range=0.2, attn_implementation="eager")
    return _finish(t.ASTForAudioClassification(config), "logits")


def _wav2vec2() -> nn.Module:
    """wav2vec2-base layout: GroupNorm-first conv feature extractor, feature projection, weight-normed grouped
    positional conv (even kernel, last frame trimmed), post-LN transformer."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.Wav2Vec2Config(**_W2V_COMMON, feat_extract_norm="group", do_stable_layer_norm=False)
    return _finish(t.Wav2Vec2Model(config), "last_hidden_state")


def _hubert() -> nn.Module:
    """HuBERT-large layout: LayerNorm conv feature extractor (conv_bias), feature-projection LayerNorm, positional
    conv, stable (pre-LN) transformer."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.HubertConfig(**_W2V_COMMON, feat_extract_norm="layer", conv_bias=True, feat_proj_layer_norm=True,
                            do_stable_layer_norm=True)
    return _finish(t.HubertModel(config), "last_hidden_state")


def _wavlm() -> nn.Module:
    """WavLM-base layout: wav2vec2 front end, bucketed relative position bias built from the runtime length (first
    layer, shared onward) with GRU-style gating per head."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.WavLMConfig(**_W2V_COMMON, feat_extract_norm="group", num_buckets=16, max_bucket_distance=64)
    return _finish(t.WavLMModel(config), "last_hidden_state")


def _data2vec_audio() -> nn.Module:
    """data2vec-audio layout: LayerNorm conv feature extractor, a stack of grouped positional convs with LayerNorm
    and GELU instead of one weight-normed conv, post-LN transformer."""
    t = _transformers()
    torch.manual_seed(0)
    common = {k: v for k, v in _W2V_COMMON.items() if k != "num_conv_pos_embeddings"}
    config = t.Data2VecAudioConfig(**common, num_conv_pos_embeddings=2, conv_pos_kernel_size=5)
    return _finish(t.Data2VecAudioModel(config), "last_hidden_state")


def _sew() -> nn.Module:
    """SEW layout: wav2vec2 front end, then the transformer runs on a sequence squeezed 2x by a strided positional
    conv and average pooling and is upsampled back (linear + reshape) and padded to the frame count."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.SEWConfig(**_W2V_COMMON, feat_extract_norm="group", squeeze_factor=2)
    return _finish(t.SEWModel(config), "last_hidden_state")


def _unispeech_sat() -> nn.Module:
    """UniSpeech-SAT-base layout: wav2vec2 front end and post-LN transformer (speaker-aware pretraining heads unused
    by the base model)."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.UniSpeechSatConfig(**_W2V_COMMON, feat_extract_norm="group", do_stable_layer_norm=False)
    return _finish(t.UniSpeechSatModel(config), "last_hidden_state")


def _whisper_encoder() -> nn.Module:
    """Whisper encoder: two GELU convs over [mel, frames] (second one stride 2), sinusoidal position table added
    whole (the input length is fixed at 2 * max_source_positions), pre-LN transformer, final LayerNorm."""
    t = _transformers()
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    torch.manual_seed(0)
    config = t.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                             num_mel_bins=16, max_source_positions=32, init_std=0.2, attn_implementation="eager")
    return _finish(WhisperEncoder(config), "last_hidden_state")


def _speech2text_encoder() -> nn.Module:
    """Speech2Text (S2T) encoder: two stride-2 GLU convs subsample [frames, features], scaled embeddings plus a
    sinusoidal table gathered at positions built from the runtime length, pre-LN transformer."""
    t = _transformers()
    from transformers.models.speech_to_text.modeling_speech_to_text import Speech2TextEncoder
    torch.manual_seed(0)
    config = t.Speech2TextConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                                 input_feat_per_channel=16, input_channels=1, conv_channels=32,
                                 conv_kernel_sizes=(5, 5), max_source_positions=256, init_std=0.1,
                                 attn_implementation="eager")
    return _finish(Speech2TextEncoder(config), "last_hidden_state")


CLAP_SHAPE = (1, 100, 16)


def _clap_audio() -> nn.Module:
    """CLAP audio tower (HTSAT): BatchNorm over mel bins, bicubic resize of [time, mel] to the Swin image size,
    fold of time into 4 frequency rows, 2 Swin stages (shifted windows, patch merging), grouped frequency pooling,
    projection head."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.ClapAudioConfig(spec_size=64, num_mel_bins=16, window_size=4, patch_size=4, patch_stride=(4, 4),
                               depths=(2, 2), num_attention_heads=(2, 4), patch_embeds_hidden_size=32, hidden_size=64,
                               projection_dim=32, enable_fusion=False, initializer_factor=5.0,
                               attn_implementation="eager")
    return _finish(t.ClapAudioModelWithProjection(config), "audio_embeds", CLAP_SHAPE)


def _encodec_encoder() -> nn.Module:
    """EnCodec SEANet encoder: causal reflect-padded weight-normed convs, residual units with conv shortcuts,
    ELU, strided downsampling (4, 2 here), a 2-layer LSTM with skip, final conv to the latent size."""
    t = _transformers()
    torch.manual_seed(0)
    config = t.EncodecConfig(audio_channels=1, hidden_size=32, num_filters=8, upsampling_ratios=(2, 4),
                             num_residual_layers=1, num_lstm_layers=2, codebook_size=16)
    return _finish(t.EncodecModel(config).encoder, None)


AUDIO_ZOO: dict[str, AudioEntry] = {
    "ast": AudioEntry(_ast, (64, 32), "input_values"),
    "wav2vec2": AudioEntry(_wav2vec2, RAW, "input_values", {1: "samples"}),
    "hubert": AudioEntry(_hubert, RAW, "input_values", {1: "samples"}),
    "wavlm": AudioEntry(_wavlm, RAW, "input_values", {1: "samples"}),
    "data2vec_audio": AudioEntry(_data2vec_audio, RAW, "input_values", {1: "samples"}),
    "sew": AudioEntry(_sew, RAW, "input_values", {1: "samples"}),
    "unispeech_sat": AudioEntry(_unispeech_sat, RAW, "input_values", {1: "samples"}),
    "whisper_encoder": AudioEntry(_whisper_encoder, (16, 64), "input_features"),
    "speech2text_encoder": AudioEntry(_speech2text_encoder, (100, 16), "input_features", {1: "frames"}),
    "clap_audio": AudioEntry(_clap_audio, CLAP_SHAPE, "input_features"),
    "encodec_encoder": AudioEntry(_encodec_encoder, (1, 1600), "input_values", {2: "samples"}),
}
