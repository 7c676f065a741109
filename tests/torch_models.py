"""Small PyTorch models, one per CNN family graphport must convert, built in code (no downloads).

Weights are seeded and random; BatchNorm statistics are calibrated on random batches (as the seed fixture's
`export_seed_effnet.py` does), because an uncalibrated random net returns nearly the same row for every input and
numeric checks would then prove little.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

MEL = (128, 96)       # [batch, 128 mel bands, 96 frames], the seed model's input
IMAGE = (1, 64, 64)   # [batch, 1, 64, 64]


# ---- EfficientNet (efficientnet_pytorch), both same-padding styles ------------------------------------------------
class SeedNet(nn.Module):
    """The seed model (fixtures/make/export_seed_effnet.py): EfficientNet on a mel spectrogram, sigmoid outputs.

    `image_size` given -> Conv2dStaticSamePadding (ZeroPad2d + Conv); None -> Conv2dDynamicSamePadding (a Pad
    computed from the runtime shape)."""

    def __init__(self, **over):
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.body = EfficientNet.from_name("efficientnet-b0", in_channels=1, **over)
        self.body.set_swish(memory_efficient=False)

    def forward(self, melspectrogram):
        return torch.sigmoid(self.body(melspectrogram.unsqueeze(1)))


def effnet_static() -> nn.Module:
    return SeedNet(num_classes=10, width_coefficient=0.25, depth_coefficient=0.1, image_size=list(MEL))


def effnet_dynamic() -> nn.Module:
    return SeedNet(num_classes=10, width_coefficient=0.25, depth_coefficient=0.1, image_size=None)


# ---- MobileNetV2 / V3 style ------------------------------------------------------------------------------------
def _cbn(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: type | None = nn.ReLU6) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise kxk, optional SE, 1x1 linear project, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, k: int = 3, act: type = nn.ReLU6,
                 se: bool = False):
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = _cbn(cin, mid, act=act) if expand != 1 else nn.Identity()
        self.dw = _cbn(mid, mid, k, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = _cbn(mid, cout, act=None)

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_res else y


class SqueezeExcite(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, max(c // 4, 8), 1), nn.Conv2d(max(c // 4, 8), c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class MobileNet(nn.Module):
    def __init__(self, v3: bool, num_classes: int = 10):
        super().__init__()
        act = nn.Hardswish if v3 else nn.ReLU6
        self.stem = _cbn(1, 16, 3, 2, act=act)
        cfg = [(16, 16, 1, 1, 3, False), (16, 24, 2, 4, 3, False), (24, 24, 1, 4, 3, v3), (24, 32, 2, 4, 5, v3),
               (32, 32, 1, 4, 5, v3)]
        self.blocks = nn.Sequential(*[InvertedResidual(a, b, s, e, k, act, se) for a, b, s, e, k, se in cfg])
        self.head = _cbn(32, 64, act=act)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def mobilenet_v2() -> nn.Module:
    return MobileNet(v3=False)


def mobilenet_v3() -> nn.Module:
    return MobileNet(v3=True)


# ---- ShuffleNetV2 / GhostNet style -----------------------------------------------------------------------------
def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's spelling: view with the runtime batch, transpose the two group dims, view back."""
    n, c, h, w = x.size()
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits the channels (chunk) and keeps one half; stride 2 runs both branches.
    Ends in a channel shuffle, which the next unit chunks again."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        self.branch1 = nn.Sequential(_cbn(cin, cin, 3, stride, groups=cin, act=None), _cbn(cin, half, act=nn.ReLU)) \
            if stride == 2 else nn.Identity()
        b_in = cin if stride == 2 else half
        self.branch2 = nn.Sequential(_cbn(b_in, half, act=nn.ReLU), _cbn(half, half, 3, stride, groups=half, act=None),
                                     _cbn(half, half, act=nn.ReLU))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class GhostModule(nn.Module):
    """GhostNet: a primary conv, cheap depthwise features of it, both concatenated and sliced to `cout` channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cout = cout
        init = (cout + 1) // 2
        self.primary = _cbn(cin, init, act=nn.ReLU)
        self.cheap = _cbn(init, init, 3, groups=init, act=nn.ReLU)

    def forward(self, x):
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)[:, :self.cout]


class ShuffleNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = _cbn(1, 16, 3, 2, act=nn.ReLU)
        self.units = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1), ShuffleUnit(32, 64, 2),
                                   ShuffleUnit(64, 64, 1), GhostModule(64, 45))
        self.fc = nn.Linear(45, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.units(self.stem(x)), 1), 1))


# ---- ResNet style ----------------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Identity() if stride == 1 and cin == cout else \
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.down(x))


class ResNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
        self.pool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


# ---- VGG style: odd sizes so that ceil_mode and padded average pools matter ------------------------------------
class VGG(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(),                                      # 64 -> 62
            nn.MaxPool2d(3, 2, ceil_mode=True),                                  # 62 -> 31
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True),                       # 31 -> 16, count_include_pad
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),  # 16 -> 8
            nn.MaxPool2d(2, 2, padding=1),                                       # 8 -> 5
        )
        self.fc = nn.Sequential(nn.Linear(32 * 5 * 5, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


# ---- 1-D conv net over time: two outputs (softmax and log-softmax) ---------------------------------------------
class Conv1dNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(MEL[0], 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.AvgPool1d(3, 2, padding=1),
            nn.Conv1d(32, 48, 3, dilation=2, padding=2), nn.ReLU(), nn.MaxPool1d(3, 2, ceil_mode=True))
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        h = self.net(x)
        z = self.fc(torch.cat([torch.amax(h, dim=2), torch.mean(h, dim=2)], dim=1))
        return torch.softmax(z, dim=1), torch.log_softmax(z, dim=1)


# name -> (builder, input shape without batch, number of outputs)
FAMILIES = {
    "effnet_static": (effnet_static, MEL, 1),
    "effnet_dynamic": (effnet_dynamic, MEL, 1),
    "mobilenet_v2": (mobilenet_v2, IMAGE, 1),
    "mobilenet_v3": (mobilenet_v3, IMAGE, 1),
    "shufflenet": (ShuffleNet, IMAGE, 1),
    "resnet": (ResNet, IMAGE, 1),
    "vgg": (VGG, IMAGE, 1),
    "conv1d": (Conv1dNet, MEL, 2),
}


def calibrate(net: nn.Module, shape: tuple[int, ...], steps: int = 10, batch: int = 16) -> nn.Module:
    """Give BatchNorm layers the running statistics of random inputs (cumulative average), then switch to eval.
    With steps=30 and the same seed this reproduces the seed fixture's weights exactly."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(torch.randn(batch, *shape))
    return net.eval()


def build(family: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor, int]:
    """A seeded, calibrated model in eval mode, an example input (batch 2), and its number of outputs."""
    builder, shape, n_out = FAMILIES[family]
    torch.manual_seed(seed)
    net = calibrate(builder(), shape)
    return net, torch.randn(2, *shape), n_out


def export(model: nn.Module, example: torch.Tensor, path: str | Path, opset: int | None, dynamo: bool,
           n_outputs: int = 1, input_name: str = "input") -> Path:
    """Export with a dynamic batch: the legacy TorchScript exporter (`dynamic_axes`) at `opset`, or the dynamo
    exporter (`dynamic_shapes`, its default opset when `opset` is None)."""
    path = Path(path)
    outputs = [f"output_{i}" for i in range(n_outputs)]
    with torch.no_grad():
        if dynamo:
            kw = {} if opset is None else {"opset_version": opset}
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=[input_name], output_names=outputs,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), **kw)
        else:
            axes = {name: {0: "batch"} for name in [input_name, *outputs]}
            torch.onnx.export(model, (example,), str(path), opset_version=opset, input_names=[input_name],
                              output_names=outputs, dynamic_axes=axes, dynamo=False)
    return path
