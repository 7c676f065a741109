"""Regenerate the bundled example model `graphport/examples/example_effnet.onnx`.

A small EfficientNet (efficientnet_pytorch, width 0.25, depth 0.25, 1 input channel, 10 sigmoid outputs) on
`melspectrogram [batch,128,96] -> output_0`, with a dynamic batch axis: the seed model's family and graph pathology
at under 1 MB. Weights are seeded; BatchNorm statistics are calibrated on random batches so outputs depend on the
input (an uncalibrated random EfficientNet returns nearly the same row for every input).

usage: python examples/make_example.py [OUT.onnx]   (needs the test extra: torch, efficientnet-pytorch)
"""

import sys
from pathlib import Path

import torch
from efficientnet_pytorch import EfficientNet

OUT = Path(__file__).resolve().parents[1] / "graphport" / "examples" / "example_effnet.onnx"


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = EfficientNet.from_name("efficientnet-b0", in_channels=1, num_classes=10,
                                           width_coefficient=0.25, depth_coefficient=0.25)
        self.body.set_swish(memory_efficient=False)

    def forward(self, melspectrogram: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(melspectrogram.unsqueeze(1)))


def calibrated(net: torch.nn.Module, steps: int = 30) -> torch.nn.Module:
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(torch.randn(16, 128, 96))
    return net.eval()


if __name__ == "__main__":
    torch.manual_seed(0)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    torch.onnx.export(calibrated(Net()), (torch.randn(1, 128, 96),), str(out), opset_version=11,
                      input_names=["melspectrogram"], output_names=["output_0"],
                      dynamic_axes={"melspectrogram": {0: "batch"}, "output_0": {0: "batch"}}, dynamo=False)
    print(out, out.stat().st_size, "bytes")
