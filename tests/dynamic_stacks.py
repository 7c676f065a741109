"""Random 1-D and 2-D layer stacks over a dynamic length, for the property tests in test_dynamic_properties.py.

A `Stack` describes a small CNN: conv (strides, dilations, int or 'same'/'valid' padding, groups), pool (MaxPool with
dilation, AvgPool with count_include_pad, both with padding and ceil_mode), norm (BatchNorm calibrated with
`torch_models.calibrate`, GroupNorm, InstanceNorm, LayerNorm over channels), activation and a reduction head (mean or
max over the length axis, adaptive average pool to 1, or none: the output keeps a dynamic length). Inputs:

- 1-D: `[batch, channels, length]`, or raw audio `[batch, length]` (unsqueezed to one channel);
- 2-D: `[batch, channels, time, freq]` with `time` dynamic and `freq` fixed or dynamic too.

`stacks()` is the hypothesis strategy; `build()` makes the seeded torch module and `export()` writes the ONNX file
with the TorchScript exporter (`dynamic_axes`) or dynamo (`dynamic_shapes` with `torch.export.Dim`). `axis_sizes()`
follows one spatial axis through the stack with torch's own size rules, so a case knows the smallest length at which
torch runs it (`min_size`) and exports at a length it accepts.

Two fixed regression models live here too: `raw_wave_cnn()` (dynamic `samples`, empty after its MaxPool at 512
samples in ONNX Runtime, fine at 16000) and `tiny_wav2vec2()` (transformers' encoder, dynamic `samples`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from hypothesis import strategies as st
from torch import nn
from torch_models import calibrate

ACTIVATIONS = ("relu", "leaky_relu", "gelu", "gelu_tanh", "elu", "silu", "tanh")
HEADS = ("mean", "max", "adaptive", "none")


class ExportFailed(Exception):
    """The exporter refused the drawn model, or did not keep its dynamic dims dynamic (dynamo may specialise)."""


# ---- layer descriptions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    out: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...] | str  # per-axis ints, or 'same' / 'valid'
    groups: int
    bias: bool = True


@dataclass(frozen=True)
class Pool:
    kind: str  # 'max' or 'avg'
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]  # all 1 for 'avg'
    ceil_mode: bool
    count_include_pad: bool = True  # 'avg' only


@dataclass(frozen=True)
class Norm:
    kind: str  # 'batch', 'group', 'instance', 'layer'
    groups: int = 1
    affine: bool = True


@dataclass(frozen=True)
class Act:
    kind: str
    param: float = 0.0


@dataclass(frozen=True)
class Stack:
    rank: int                      # 1 or 2 spatial axes
    raw: bool                      # 1-D raw audio [batch, length]
    in_ch: int
    layers: tuple
    head: str
    opset: int
    dynamo: bool
    seed: int
    freq: int = 0                  # the example freq size (2-D)
    freq_dynamic: bool = False     # 2-D: freq is a dynamic dim too
    example_extra: int = 0         # the example length is min_size + this
    check_extra: tuple[int, int] = (0, 1)  # independent check lengths: min_size + these (see check_lengths)

    @property
    def input_name(self) -> str:
        return "audio" if self.raw else ("spec" if self.rank == 2 else "frames")

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Input axis -> dim name, the batch included."""
        if self.rank == 1:
            return {0: "batch", 1 if self.raw else 2: "length"}
        return {0: "batch", 2: "time", **({3: "freq"} if self.freq_dynamic else {})}

    def describe(self) -> str:
        if self.raw:
            shape = "[batch, length]"
        elif self.rank == 1:
            shape = f"[batch, {self.in_ch}, length]"
        else:
            shape = f"[batch, {self.in_ch}, time, {'freq' if self.freq_dynamic else self.freq}]"
        exporter = f"dynamo opset {self.opset}" if self.dynamo else f"torch.onnx legacy opset {self.opset}"
        lines = [f"{self.rank}-D stack, input {shape}, {exporter}, seed {self.seed}, head {self.head}",
                 (f"min sizes (torch rules): {min_sizes(self)}, example extra {self.example_extra}, "
                  f"check extra {self.check_extra}")]
        lines += [f"  {layer}" for layer in self.layers]
        return "\n".join(lines)


# ---- torch's size rules, one spatial axis at a time -----------------------------------------------------------
def _layer_size(layer, axis: int, n: int) -> int | None:
    """The size of `axis` after `layer` for input size n (torch's rules), or None where torch refuses it."""
    if isinstance(layer, Conv):
        k, s, d = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
        if layer.padding == "same":
            return n
        p = 0 if layer.padding == "valid" else layer.padding[axis]
        span = d * (k - 1) + 1
        if n + 2 * p < span:
            return None
        return (n + 2 * p - span) // s + 1
    if isinstance(layer, Pool):
        k, s, p, d = layer.kernel[axis], layer.stride[axis], layer.padding[axis], layer.dilation[axis]
        span = d * (k - 1) + 1
        num = n + 2 * p - span + ((s - 1) if layer.ceil_mode else 0)
        if num < 0:
            return None
        out = num // s + 1
        if layer.ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        return out if out >= 1 else None
    if isinstance(layer, Norm) and layer.kind == "instance" and n < 2:
        return None  # torch's instance norm wants more than one spatial element (taken per axis: conservative)
    return n


def axis_sizes(layers, axis: int, n: int) -> list[int] | None:
    """Sizes of `axis` after each layer for input size n, or None if torch refuses the stack at n."""
    sizes = []
    for layer in layers:
        n = _layer_size(layer, axis, n)
        if n is None or n < 1:
            return None
        sizes.append(n)
    return sizes


def min_size(layers, axis: int, limit: int = 1 << 16) -> int:
    """The smallest input size of `axis` at which torch runs the stack (output sizes grow with the input)."""
    for n in range(1, limit):
        if axis_sizes(layers, axis, n) is not None:
            return n
    raise ValueError("no valid size")


def min_sizes(case: Stack) -> dict[str, int]:
    names = {"length": 0} if case.rank == 1 else {"time": 0, "freq": 1}
    return {name: min_size(case.layers, axis) for name, axis in names.items()}


def check_lengths(case: Stack) -> list[dict[str, int]]:
    """Candidate dim sizes (name -> size) for the independent comparison with ORT, most interesting first: the
    smallest valid length plus the drawn offsets, an odd larger one, then fallbacks."""
    mins = min_sizes(case)
    lead = "length" if case.rank == 1 else "time"
    base = mins[lead]
    a, b = case.check_extra
    lengths = [base + a, base + a + b, 3 * base + 17, base, 4 * base + 101]
    seen, out = set(), []
    for i, n in enumerate(lengths):
        if n in seen:
            continue
        seen.add(n)
        dims = {lead: n}
        if case.freq_dynamic:
            dims["freq"] = mins["freq"] + (i * 3 + a) % 7
        out.append(dims)
    return out


# ---- the torch module -----------------------------------------------------------------------------------------
class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of [batch, C, ...]: channels last, normalise, back. The permutation is spelled
    with non-negative axes: the TorchScript exporter writes `movedim(1, -1)` as Transpose perm [0, -1, 1], which ONNX
    Runtime refuses."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x.dim() - 1
        return self.norm(x.movedim(1, last)).movedim(last, 1)


class StackNet(nn.Module):
    def __init__(self, case: Stack):
        super().__init__()
        self.raw, self.rank, self.head = case.raw, case.rank, case.head
        self.body = nn.Sequential(*_modules(case))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x.unsqueeze(1) if self.raw else x)
        if self.head == "mean":
            return y.mean(dim=2)
        if self.head == "max":
            return y.amax(dim=2)
        if self.head == "adaptive":
            pool = nn.functional.adaptive_avg_pool1d if self.rank == 1 else nn.functional.adaptive_avg_pool2d
            return torch.flatten(pool(y, 1), 1)
        return y


def _act(a: Act) -> nn.Module:
    return {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(a.param), "gelu": lambda: nn.GELU(),
            "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "elu": lambda: nn.ELU(a.param),
            "silu": lambda: nn.SiLU(), "tanh": lambda: nn.Tanh()}[a.kind]()


def _modules(case: Stack) -> list[nn.Module]:
    two = case.rank == 2
    c = 1 if case.raw else case.in_ch
    mods = []
    for layer in case.layers:
        if isinstance(layer, Conv):
            conv = nn.Conv2d if two else nn.Conv1d
            pad = layer.padding if isinstance(layer.padding, str) else tuple(layer.padding)
            mods.append(conv(c, layer.out, tuple(layer.kernel), tuple(layer.stride), pad, tuple(layer.dilation),
                             groups=layer.groups, bias=layer.bias))
            c = layer.out
        elif isinstance(layer, Pool):
            if layer.kind == "max":
                pool = nn.MaxPool2d if two else nn.MaxPool1d
                mods.append(pool(tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding),
                                 tuple(layer.dilation), ceil_mode=layer.ceil_mode))
            else:
                pool = nn.AvgPool2d if two else nn.AvgPool1d
                mods.append(pool(tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding),
                                 ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad))
        elif isinstance(layer, Norm):
            if layer.kind == "batch":
                mods.append((nn.BatchNorm2d if two else nn.BatchNorm1d)(c))
            elif layer.kind == "group":
                mods.append(nn.GroupNorm(layer.groups, c, affine=layer.affine))
            elif layer.kind == "instance":
                mods.append((nn.InstanceNorm2d if two else nn.InstanceNorm1d)(c, affine=layer.affine))
            else:
                mods.append(ChannelLayerNorm(c))
        else:
            mods.append(_act(layer))
    return mods


@torch.no_grad()
def _randomize_norms(net: nn.Module) -> None:
    """Norm gammas/betas start at 1/0; move them so a bug in either shows in the outputs."""
    for m in net.modules():
        norm = isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm,
                              nn.modules.instancenorm._InstanceNorm))
        if norm and getattr(m, "weight", None) is not None:
            m.weight.add_(0.3 * torch.randn_like(m.weight))
            m.bias.add_(0.3 * torch.randn_like(m.bias))


def example_shape(case: Stack, extra: int | None = None) -> tuple[int, ...]:
    """The input shape without the batch at min_size + extra (the example's own extra by default)."""
    mins = min_sizes(case)
    extra = case.example_extra if extra is None else extra
    if case.rank == 1:
        n = max(mins["length"] + extra, 2)
        return (n,) if case.raw else (case.in_ch, n)
    freq = max(mins["freq"] + (extra % 5), 2) if case.freq_dynamic else case.freq
    return (case.in_ch, max(mins["time"] + extra, 2), freq)


def build(case: Stack) -> tuple[nn.Module, torch.Tensor]:
    """The seeded module in eval mode (BatchNorm calibrated) and an example input of batch 2."""
    torch.manual_seed(case.seed)
    net = StackNet(case)
    _randomize_norms(net)
    shape = example_shape(case)
    if any(isinstance(layer, Norm) and layer.kind == "batch" for layer in case.layers):
        calibrate(net, shape, steps=3, batch=8)
    net.eval()
    return net, torch.randn(2, *shape)


def export(case: Stack, path: str | Path) -> Path:
    """Export `case` to `path`; ExportFailed when the exporter refuses it or keeps a dynamic dim fixed."""
    import onnx

    path = Path(path)
    net, example = build(case)
    axes = case.dynamic_axes
    try:
        with torch.no_grad():
            if case.dynamo:
                from torch.export import Dim

                mins = min_sizes(case)
                dims = {0: Dim("batch", min=1, max=1024)}
                for axis, name in axes.items():
                    if axis:
                        dims[axis] = Dim(name, min=max(mins[name], 2), max=1 << 16)
                torch.onnx.export(net, (example,), str(path), dynamo=True, input_names=[case.input_name],
                                  output_names=["output"], opset_version=case.opset, dynamic_shapes=(dims,),
                                  verbose=False)
            else:
                torch.onnx.export(net, (example,), str(path), opset_version=case.opset, dynamo=False,
                                  input_names=[case.input_name], output_names=["output"],
                                  dynamic_axes={case.input_name: axes, "output": {0: "batch"}})
    except Exception as e:  # any exporter refusal excludes the case
        raise ExportFailed(f"{type(e).__name__}: {str(e)[:300]}") from e
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    kept = {axis: dims[axis].dim_param for axis in axes}
    if not all(kept.values()):
        raise ExportFailed(f"the exporter fixed a dynamic dim: input dims {[d.dim_param or d.dim_value for d in dims]}")
    return path


# ---- the hypothesis strategy ----------------------------------------------------------------------------------
def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _per_axis(draw, rank: int, values) -> tuple[int, ...]:
    first = draw(values)
    if rank == 1 or draw(st.booleans()):  # 2-D: often square, sometimes per axis
        return (first,) * rank
    return (first, draw(values))


@st.composite
def _conv(draw, rank: int, c: int) -> Conv:
    groups = draw(st.sampled_from(_divisors(c)))
    out = groups * draw(st.integers(max(1, math.ceil(2 / groups)), 16 // groups))
    kernel = _per_axis(draw, rank, st.integers(1, 7))
    stride = _per_axis(draw, rank, st.sampled_from([1, 1, 2, 3]))
    dilation = _per_axis(draw, rank, st.sampled_from([1, 1, 2, 3]))
    choices = ["int", "valid"] + (["same", "same"] if set(stride) == {1} else [])
    style = draw(st.sampled_from(choices))
    padding = style if style != "int" else _per_axis(draw, rank, st.integers(0, 3))
    return Conv(out, kernel, stride, dilation, padding, groups, draw(st.booleans()))


@st.composite
def _pool(draw, rank: int) -> Pool:
    kind = draw(st.sampled_from(["max", "avg"]))
    kernel = _per_axis(draw, rank, st.integers(1, 4))
    stride = tuple(k if draw(st.booleans()) else draw(st.integers(1, 3)) for k in kernel)
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = _per_axis(draw, rank, st.sampled_from([1, 1, 2])) if kind == "max" else (1,) * rank
    return Pool(kind, kernel, stride, padding, dilation, draw(st.booleans()),
                draw(st.booleans()) if kind == "avg" else True)


@st.composite
def _norm(draw, c: int) -> Norm:
    kind = draw(st.sampled_from(["batch", "group", "instance", "layer"]))
    if kind == "group":
        return Norm("group", draw(st.sampled_from(_divisors(c))), draw(st.booleans()))
    if kind == "instance":
        return Norm("instance", 1, draw(st.booleans()))
    return Norm(kind)


@st.composite
def _act_layer(draw) -> Act:
    kind = draw(st.sampled_from(ACTIVATIONS))
    param = {"leaky_relu": st.sampled_from([0.01, 0.1, 0.3]), "elu": st.sampled_from([1.0, 0.5])}.get(kind)
    return Act(kind, draw(param) if param is not None else 0.0)


@st.composite
def stacks(draw, rank: int | None = None, dynamo: bool | None = None) -> Stack:
    """A random stack: 1 to 6 layers after a first conv, a head, an opset (13-18 legacy, 18 dynamo)."""
    rank = draw(st.sampled_from([1, 2])) if rank is None else rank
    dynamo = draw(st.booleans()) if dynamo is None else dynamo
    raw = rank == 1 and draw(st.integers(0, 2)) == 0
    in_ch = 1 if raw else draw(st.integers(1, 8))
    c = in_ch
    layers = [draw(_conv(rank, c))]
    c = layers[0].out
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "pool", "norm", "act", "act"]))
        if kind == "conv":
            layer = draw(_conv(rank, c))
            c = layer.out
        elif kind == "pool":
            layer = draw(_pool(rank))
        elif kind == "norm":
            layer = draw(_norm(c))
        else:
            layer = draw(_act_layer())
        layers.append(layer)
    layers = tuple(layers)
    # keep cases fast: no stack needing a huge minimum length
    mins = [min_size(layers, axis) for axis in range(rank)]
    if max(mins) > 800:
        layers = layers[:1]
        mins = [min_size(layers, axis) for axis in range(rank)]
    freq_dynamic = rank == 2 and draw(st.booleans())
    freq = mins[1] + draw(st.integers(0, 8)) if rank == 2 else 0
    opset = 18 if dynamo else draw(st.integers(13, 18))
    return Stack(rank, raw, in_ch, layers, draw(st.sampled_from(HEADS)), opset, dynamo, draw(st.integers(0, 2**16)),
                 freq=freq, freq_dynamic=freq_dynamic, example_extra=draw(st.integers(0, 24)),
                 check_extra=(draw(st.integers(0, 40)), draw(st.integers(1, 300))))


# ---- fixed regression models ----------------------------------------------------------------------------------
class RawWaveCNN(nn.Module):
    """[batch, samples] -> [batch, 16]: strided and dilated Conv1d, GroupNorm, LeakyReLU, MaxPool1d(4), mean over
    time. At 512 samples the convs leave 101, 50, 10, 2 frames and the MaxPool's window does not fit: ONNX Runtime
    then gives it 0 frames and the mean over them is NaN (torch refuses). At 16000 samples: 3199, 1599, 397, 131,
    32 frames."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, 16, 10, stride=5), nn.GroupNorm(4, 16), nn.LeakyReLU(0.1),
            nn.Conv1d(16, 16, 3, stride=2), nn.LeakyReLU(0.1),
            nn.Conv1d(16, 16, 5, stride=4, dilation=3), nn.LeakyReLU(0.1),
            nn.Conv1d(16, 16, 3, stride=3, dilation=2), nn.LeakyReLU(0.1),
            nn.MaxPool1d(4))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        return self.body(samples.unsqueeze(1)).mean(dim=2)


def raw_wave_cnn(path: str | Path) -> Path:
    """RawWaveCNN (seeded, norms randomised) exported at opset 17 with {0: 'batch', 1: 'samples'}."""
    torch.manual_seed(0)
    net = RawWaveCNN()
    _randomize_norms(net)
    net.eval()
    with torch.no_grad():
        torch.onnx.export(net, (torch.randn(2, 16000),), str(path), opset_version=17, dynamo=False,
                          input_names=["samples"], output_names=["output"],
                          dynamic_axes={"samples": {0: "batch", 1: "samples"}, "output": {0: "batch"}})
    return Path(path)


def tiny_wav2vec2(path: str | Path) -> Path:
    """transformers' Wav2Vec2Model (hidden 32, 2 layers, 4 convs of 16 channels, strides 5-4-4-4), random weights
    with the constant-initialised ones randomised, exported at opset 17 with {0: 'batch', 1: 'samples'}."""
    from zoo_models import import_timm, randomize_constants

    import_timm()
    import transformers

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16, 16),
        conv_stride=(5, 4, 4, 4), conv_kernel=(10, 4, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, attn_implementation="eager", apply_spec_augment=False,
        mask_time_prob=0.0, mask_feature_prob=0.0, layerdrop=0.0)
    model = randomize_constants(transformers.Wav2Vec2Model(config)).eval()

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            return self.model(input_values).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(Encoder().eval(), (torch.randn(2, 4000),), str(path), opset_version=17, dynamo=False,
                          input_names=["input_values"], output_names=["output"],
                          dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "output": {0: "batch"}})
    return Path(path)
