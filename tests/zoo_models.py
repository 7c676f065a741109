"""The architecture zoo: real architectures from code nobody here wrote (timm, torchvision, transformers), built with
random weights (no downloads) and exported to ONNX with a dynamic batch, as a user would bring them.

Random init hides structure unless it is undone: parameters that an architecture initialises to a constant (norm
gamma/beta, layer scales, zero attention biases, the zero-init last BN of a residual block) are randomised, and
BatchNorm statistics are calibrated on random batches, so that every branch shows in the outputs. The test harness
also rejects a model whose output does not depend on its input.

timm imports torchvision (timm/layers/create_norm.py: `from torchvision.ops.misc import FrozenBatchNorm2d`). The
torchvision wheel that matches a CPU-only torch on PyPI is a CUDA build: its `_C.so` does not load, after which
`torchvision/_meta_registrations.py` calls `torch.library.register_fake("torchvision::nms")` (and `qnms`) on
operators that were never defined and the import dies with `RuntimeError: operator torchvision::nms does not
exist`. Those two registrations are the only ones not guarded by `extension._has_ops()`, so defining the two
schemas (no kernels) with `torch.library` and importing again is enough: the pure-Python part of torchvision
(its classifiers and segmenters, and everything timm needs) works; only the C++ ops (nms, roi_align, ...) stay
unavailable. A torchvision whose `_C` loads (a matching CPU build) is imported untouched.

`ZOO` maps a name to a `ZooEntry`; `zoo_model(name, path)` exports it. Images are [batch, 3, 64, 64]: small, but
the ONNX graph keeps the structure that matters (batch-dependent reshapes of split attention and window partition,
shifted-window masks, relative-position-bias gathers, attention downsampling, channel shuffles, reparameterised
branches, resizes back to the input size).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch_models import calibrate

IMAGE = (3, 64, 64)
_TV_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
               "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_tv_lib = None  # keeps the torch.library definitions alive


@dataclass(frozen=True)
class ZooEntry:
    family: str  # "timm", "torchvision" or "transformers"
    build: Callable[[], nn.Module]  # the seeded, randomised, calibrated model in eval mode
    shape: tuple[int, ...] = IMAGE  # input shape without the batch
    input_name: str = "input"
    axes: dict[int, str] = field(default_factory=dict)  # dynamic input axes besides the batch
    dynamo: bool = False  # exported by torch's dynamo exporter instead of the TorchScript one
    fast: bool = False  # in the default test run (the whole zoo is opt-in: --run-zoo)


def import_timm():
    """Import timm, making a CUDA-only torchvision wheel importable on a CPU torch (see the module docstring).
    Raises ImportError when timm or torchvision is missing (both are test extras)."""
    global _tv_lib
    try:
        import torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        if _tv_lib is None:
            _tv_lib = torch.library.Library("torchvision", "DEF")
            for schema in _TV_SCHEMAS:
                _tv_lib.define(schema)
        import torchvision  # noqa: F401
    import timm
    return timm


@torch.no_grad()
def randomize_constants(net: nn.Module, scale: float = 0.2) -> nn.Module:
    """Randomise parameters that are initialised to a constant (norm gamma=1/beta=0, layer scale 1e-5, zero
    attention biases, zero-init last BN of a block, ...): value + scale * N(0, 1)."""
    for p in net.parameters():
        flat = p.detach().reshape(-1)
        if flat.numel() > 0 and bool((flat == flat[0]).all()):
            p.add_(scale * torch.randn_like(p))
    return net


def _image_model(make: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import_timm()
        torch.manual_seed(0)
        return calibrate(randomize_constants(make()), IMAGE, steps=5, batch=8)
    return build


def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    return _image_model(lambda: import_timm().create_model(name, pretrained=False, num_classes=10, **kwargs))


def _resnest() -> nn.Module:
    """ResNeSt-14d layout (deep stem, avg-down shortcut, radix-2 split attention, avd), narrower, cardinality 2:
    SplitAttn reshapes with the runtime batch (`x.reshape(B, radix, C // radix, H, W)`, `RadixSoftmax` view)."""
    from timm.models.resnest import ResNestBottleneck
    from timm.models.resnet import ResNet
    return ResNet(block=ResNestBottleneck, layers=[1, 1, 1, 1], channels=(32, 64, 128, 256), stem_type="deep",
                  stem_width=16, avg_down=True, base_width=32, cardinality=2,
                  block_args={"radix": 2, "avd": True, "avd_first": False}, num_classes=10)


class _Segmentation(nn.Module):
    """torchvision segmenters return a dict; the map at the input's own size is what users export."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def _torchvision(name: str, segmentation: bool = False, **kwargs) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import torchvision
        models = torchvision.models.segmentation if segmentation else torchvision.models
        net = getattr(models, name)(weights=None, num_classes=4 if segmentation else 10, **kwargs)
        return _Segmentation(net) if segmentation else net
    return _image_model(make)


TIMM = {
    # convolutional nets
    "resnet18": _timm("resnet18"),
    "resnest": _image_model(_resnest),
    "efficientnet_b0": _timm("efficientnet_b0"),
    "efficientnetv2": _timm("efficientnetv2_rw_t"),
    "mobilenetv2": _timm("mobilenetv2_050"),
    "mobilenetv3": _timm("mobilenetv3_small_050"),
    "mobilenetv4": _timm("mobilenetv4_conv_small"),
    "regnetx": _timm("regnetx_002"),
    "ghostnet": _timm("ghostnet_100"),
    "convnext": _timm("convnext_atto"),
    "mixnet": _timm("mixnet_s"),
    "inception_next": _timm("inception_next_atto"),
    "densenet": _timm("densenet121"),
    "dla": _timm("dla34"),
    "rexnet": _timm("rexnet_100"),
    "lcnet": _timm("lcnet_050"),
    "hgnetv2": _timm("hgnetv2_b0"),
    "vovnet": _timm("ese_vovnet19b_slim"),
    # reparameterised nets (train-time branches, as exported before fusing)
    "repvgg": _timm("repvgg_a0"),
    "mobileone": _timm("mobileone_s0"),
    "fastvit": _timm("fastvit_t8"),
    "repghost": _timm("repghostnet_050"),
    # hybrids
    "mobilevit": _timm("mobilevit_xxs"),
    "levit": _timm("levit_128s", img_size=64),
    "edgenext": _timm("edgenext_xx_small"),
    "efficientformerv2": _timm("efficientformerv2_s0", img_size=IMAGE[1:], depths=(1, 1, 2, 2),
                               embed_dims=(16, 24, 48, 64), mlp_ratios=4, num_vit=1),
    "poolformer": _timm("poolformer_s12"),
    "mambaout": _timm("mambaout_femto"),
    "coatnet": _timm("coatnet_nano_rw_224", img_size=64),
    "efficientvit": _timm("efficientvit_b0"),
    "tiny_vit": _timm("tiny_vit_5m_224"),
    # vision transformers
    "vit": _timm("vit_tiny_patch16_224", img_size=64),
    "deit": _timm("deit_tiny_patch16_224", img_size=64),
    "xcit": _timm("xcit_nano_12_p16_224", img_size=64),
    "pvt_v2": _timm("pvt_v2_b0"),
    # window attention
    "swin": _timm("swin_tiny_patch4_window7_224", img_size=IMAGE[1:], window_size=4, embed_dim=32, depths=(2, 2),
                  num_heads=(2, 4)),
    "swinv2_cr": _timm("swinv2_cr_tiny_224", img_size=IMAGE[1:], window_size=4),
    "maxvit": _timm("maxvit_nano_rw_256", img_size=64),
    # MLPs
    "mixer": _timm("mixer_s16_224", img_size=64),
    "resmlp": _timm("resmlp_12_224", img_size=64),
    "gmlp": _timm("gmlp_ti16_224", img_size=64),
    "sequencer2d": _timm("sequencer2d_s"),
}

FAST = {"resnest", "swin", "efficientformerv2", "edgenext", "lraspp"}
DYNAMO = {"resnet18", "vit", "convnext"}

ZOO: dict[str, ZooEntry] = {
    **{name: ZooEntry("timm", build, fast=name in FAST) for name, build in TIMM.items()},
    **{f"{name}_dynamo": ZooEntry("timm", TIMM[name], dynamo=True) for name in sorted(DYNAMO)},
    "tv_resnet18": ZooEntry("torchvision", _torchvision("resnet18")),
    "tv_shufflenet": ZooEntry("torchvision", _torchvision("shufflenet_v2_x0_5")),
    "tv_mobilenet_v3": ZooEntry("torchvision", _torchvision("mobilenet_v3_small")),
    "lraspp": ZooEntry("torchvision", _torchvision("lraspp_mobilenet_v3_large", segmentation=True,
                                                   weights_backbone=None), fast=True),
    "deeplabv3": ZooEntry("torchvision", _torchvision("deeplabv3_mobilenet_v3_large", segmentation=True,
                                                      weights_backbone=None, aux_loss=False)),
}


def _add_audio() -> None:
    """The transformers audio models (tests/zoo_audio.py), when that module is present."""
    try:
        from zoo_audio import AUDIO_ZOO
    except ImportError:
        return
    for name, e in AUDIO_ZOO.items():
        ZOO[name] = ZooEntry("transformers", e.build, e.shape, e.input_name, dict(e.axes), fast=name == "wav2vec2")


_add_audio()


def zoo_model(name: str, path: str | Path) -> Path:
    """Export `name` at opset 17 with a dynamic batch (and the entry's other dynamic axes): the TorchScript exporter,
    or dynamo for `*_dynamo` entries (its default opset). Input `entry.input_name`, output `output`."""
    entry = ZOO[name]
    net = entry.build()
    torch.manual_seed(1)
    example = torch.randn(2, *entry.shape)
    path = Path(path)
    with torch.no_grad():
        if entry.dynamo:
            torch.onnx.export(net, (example,), str(path), dynamo=True, input_names=[entry.input_name],
                              output_names=["output"], opset_version=18,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
        else:
            torch.onnx.export(net, (example,), str(path), opset_version=17, dynamo=False,
                              input_names=[entry.input_name], output_names=["output"],
                              dynamic_axes={entry.input_name: {0: "batch", **entry.axes}, "output": {0: "batch"}})
    return path
