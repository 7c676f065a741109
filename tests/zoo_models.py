"""Small timm architectures that once tripped graphport (ResNeSt, EfficientFormerV2, Swin, EfficientNetV2), built
from timm's own code with random weights (no downloads) and exported to ONNX at opset 17 with a dynamic batch.

timm imports torchvision (timm/layers/create_norm.py: `from torchvision.ops.misc import FrozenBatchNorm2d`). The
torchvision wheel that matches a CPU-only torch on PyPI is a CUDA build: its `_C.so` does not load, after which
`torchvision/_meta_registrations.py` calls `torch.library.register_fake("torchvision::nms")` (and `qnms`) on
operators that were never defined and the import dies with `RuntimeError: operator torchvision::nms does not
exist`. Those two registrations are the only ones not guarded by `extension._has_ops()`, so defining the two
schemas (no kernels) with `torch.library` and importing again is enough: the pure-Python part of torchvision
(and everything timm needs from it) works; only the C++ ops (nms, roi_align, ...) stay unavailable, and timm's
classifiers never call them. A torchvision whose `_C` loads (a matching CPU build) is imported untouched.

`zoo_model(name)` -> onnx.ModelProto for name in ZOO. Models are small (input [batch, 3, 64, 64]) but keep the
structure that matters for the ONNX graph: the batch-dependent reshapes of split attention / window partition /
4-D attention, shifted-window masks, relative-position-bias gathers, attention downsampling, fused MBConv + SE.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch_models import calibrate, export

IMAGE = (3, 64, 64)
_TV_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
               "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_tv_lib = None  # keeps the torch.library definitions alive


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


def _resnest(timm):
    """ResNeSt-14d layout (deep stem, avg-down shortcut, radix-2 split attention, avd), narrower, cardinality 2:
    SplitAttn reshapes with the runtime batch (`x.reshape(B, radix, C // radix, H, W)`, `RadixSoftmax` view)."""
    from timm.models.resnest import ResNestBottleneck
    from timm.models.resnet import ResNet
    return ResNet(block=ResNestBottleneck, layers=[1, 1, 1, 1], channels=(32, 64, 128, 256), stem_type="deep",
                  stem_width=16, avg_down=True, base_width=32, cardinality=2,
                  block_args={"radix": 2, "avd": True, "avd_first": False}, num_classes=10)


def _efficientformerv2(timm):
    """EfficientFormerV2-S0 layout shrunk: 4 stages so stage 3 has attention with a stride-2 block (Attention2d
    with talking heads, attention bias gather, `flatten(2).permute`) and stage 4 an Attention2dDownsample."""
    return timm.create_model("efficientformerv2_s0", pretrained=False, img_size=IMAGE[1:], depths=(1, 1, 2, 2),
                             embed_dims=(16, 24, 48, 64), mlp_ratios=4, num_vit=1, num_classes=10)


def _swin(timm):
    """Swin-T layout shrunk: 2 stages x 2 blocks (regular + shifted window with torch.roll and attention mask),
    window 4 on 16x16 tokens, relative position bias gather, patch merging."""
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=IMAGE[1:], window_size=4,
                             embed_dim=32, depths=(2, 2), num_heads=(2, 4), num_classes=10)


def _efficientnetv2(timm):
    """timm's efficientnetv2_rw_t as is (fused MBConv, MBConv + SE, SiLU, 1024-channel head), 10 classes."""
    return timm.create_model("efficientnetv2_rw_t", pretrained=False, num_classes=10)


ZOO = {"resnest": _resnest, "efficientformerv2": _efficientformerv2, "swin": _swin, "efficientnetv2": _efficientnetv2}


@torch.no_grad()
def randomize_constants(net: nn.Module, scale: float = 0.2) -> nn.Module:
    """Randomise parameters that timm initialises to a constant (norm gamma=1/beta=0, layer scale 1e-5, zero
    attention biases, zero-init last BN of a block, ...): value + scale * N(0, 1)."""
    for p in net.parameters():
        flat = p.detach().reshape(-1)
        if flat.numel() > 0 and bool((flat == flat[0]).all()):
            p.add_(scale * torch.randn_like(p))
    return net


def build(name: str, seed: int = 0) -> nn.Module:
    """The seeded, randomised, BatchNorm-calibrated model in eval mode."""
    timm = import_timm()
    torch.manual_seed(seed)
    net = randomize_constants(ZOO[name](timm))
    return calibrate(net, IMAGE, steps=5, batch=8)


def zoo_model(name: str, seed: int = 0, path: str | Path | None = None):
    """Export `name` (a ZOO key) at opset 17 with the TorchScript exporter and a dynamic batch; returns the
    onnx.ModelProto (and leaves the file at `path` when given). Input `input` [batch,3,64,64], output `output_0`."""
    import onnx
    net = build(name, seed)
    torch.manual_seed(seed + 1)
    example = torch.randn(2, *IMAGE)
    with tempfile.TemporaryDirectory(prefix="graphport-zoo-") as tmp:
        out = Path(path) if path is not None else Path(tmp) / f"{name}.onnx"
        export(net, example, out, opset=17, dynamo=False)
        return onnx.load(str(out))
