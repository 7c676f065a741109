"""Small seeded PyTorch models beyond CNNs (transformer, recurrent, raw waveform, decoder) and their exports."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch_models import export


class ViT(nn.Module):
    """AST/ViT-style: patch-embedding conv, CLS token expanded to the batch, positional embedding,
    nn.TransformerEncoder (batch_first), CLS + mean pooling."""

    def __init__(self, mel: int = 32, frames: int = 32, patch: int = 8, dim: int = 32, heads: int = 4,
                 layers: int = 2, norm_first: bool = False, activation: str = "gelu", classes: int = 5):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, patch)
        n = (mel // patch) * (frames // patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.5)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, activation=activation,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(2 * dim, classes)

    def forward(self, x):
        p = self.patch(x.unsqueeze(1)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), p], dim=1) + self.pos
        h = self.norm(self.encoder(tokens))
        return self.head(torch.cat([h[:, 0], h[:, 1:].mean(dim=1)], dim=-1))


class TanhGelu(nn.Module):
    """A decomposed-LayerNorm MLP block with tanh-approximate GELU and a hand-written attention (Split, Where
    over an Equal/Mod mask), the spellings hand-rolled transformer code exports."""

    def __init__(self, dim: int = 24, seq: int = 10):
        super().__init__()
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.g, self.b = nn.Parameter(torch.randn(dim) * 0.1 + 1), nn.Parameter(torch.randn(dim) * 0.1)
        self.seq = seq

    def forward(self, x):  # x: [B, seq, dim]
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        h = (x - mu) / torch.sqrt(var + 1e-5) * self.g + self.b
        q, k, v = self.qkv(h).split(h.shape[-1], dim=-1)
        att = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        idx = torch.arange(x.shape[1])
        mask = torch.eq(torch.remainder(idx[:, None] - idx[None, :], 3), 0)
        att = torch.where(mask, att, torch.full_like(att, -1e4)).softmax(-1)
        y = self.out(att @ v)
        return F.gelu(y, approximate="tanh") + x.repeat(1, 1, 1)


class Recurrent(nn.Module):
    def __init__(self, kind: str = "lstm", bidirectional: bool = False, layers: int = 1, feat: int = 12,
                 hidden: int = 16):
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(feat, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 4)

    def forward(self, x):  # x: [B, T, feat]
        y, _ = self.rnn(x)
        return self.head(y)


class Waveform(nn.Module):
    """Raw-waveform front end: strided and dilated Conv1d, GroupNorm, Elu/LeakyRelu/Selu, MaxPool1d, LogSoftmax."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(1, 16, 32, stride=8, padding=12)
        self.gn = nn.GroupNorm(4, 16)
        self.c2 = nn.Conv1d(16, 16, 3, dilation=2, padding=2)
        self.c3 = nn.Conv1d(16, 24, 3, dilation=4, stride=2)
        self.pool = nn.MaxPool1d(3, 2)
        self.head = nn.Linear(24, 6)

    def forward(self, wav):  # wav: [B, samples]
        h = F.elu(self.gn(self.c1(wav.unsqueeze(1))))
        h = self.pool(F.leaky_relu(self.c2(h), 0.1))
        h = F.selu(self.c3(h))
        return F.log_softmax(self.head(h.mean(-1)), dim=-1)


class Decoder(nn.Module):
    """Decoder-style: ConvTranspose2d and Upsample (nearest, bilinear) on a [B, C, H, W] input."""

    def __init__(self, mode: str = "nearest", align_corners: bool | None = None, output_padding: int = 0):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=output_padding)
        self.mode, self.align = mode, align_corners
        self.conv = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.up(x))
        h = F.interpolate(h, scale_factor=2, mode=self.mode, align_corners=self.align)
        return self.conv(h)


def seeded(builder, *args, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return builder(*args, **kw).eval()


def export_model(net: nn.Module, shape: tuple[int, ...], path: Path, opset: int | None, dynamo: bool = False) -> Path:
    """Export with a dynamic batch. The fused fast path of nn.TransformerEncoder (aten::_transformer_encoder_
    layer_fwd) has no ONNX export, so it is switched off, as anyone exporting such a model must."""
    torch.manual_seed(1)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        return export(net, torch.randn(2, *shape), path, opset, dynamo)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def branching_model(nested: bool = False):
    """A VAD-style ONNX graph that branches on a scalar `sr` input: If(sr == 16000) -> Mul+Relu, else Sigmoid
    (with `nested`, the then-branch holds a second If on the same condition)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def vi(name, shape, t=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, t, shape)

    els = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["e0"])], "else", [], [vi("e0", ["batch", 4])])
    then_nodes = [helper.make_node("Mul", ["x", "two_t"], ["t0"]), helper.make_node("Relu", ["t0"], ["t1"])]
    if nested:
        inner = helper.make_graph([helper.make_node("Tanh", ["t1"], ["n0"])], "inner", [], [vi("n0", ["batch", 4])])
        then_nodes.append(helper.make_node("If", ["c"], ["t2"], then_branch=inner, else_branch=els))
    then = helper.make_graph(then_nodes, "then", [], [vi("t2" if nested else "t1", ["batch", 4])],
                             [numpy_helper.from_array(np.full(4, 2.0, np.float32), "two_t")])
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(16000, np.int64))),
             helper.make_node("Equal", ["sr", "k"], ["c"]),
             helper.make_node("If", ["c"], ["y0"], then_branch=then, else_branch=els),
             helper.make_node("Add", ["y0", "one"], ["y"])]
    graph = helper.make_graph(nodes, "g", [vi("x", ["batch", 4]), vi("sr", [], TensorProto.INT64)],
                              [vi("y", ["batch", 4])], [numpy_helper.from_array(np.ones(4, np.float32), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def loop_model(trips: int | None = 3):
    """A scripted-`for`-style ONNX Loop: carried h <- h * 0.5 + iter, scan output of every h; the trip count is a
    constant (`trips`) or, with None, a graph input."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def vi(name, shape, t=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, t, shape)

    body = helper.make_graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["h_in", "half"], ["m"]), helper.make_node("Add", ["m", "fi"], ["h_out"]),
         helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Tanh", ["h_out"], ["s"])],
        "body", [vi("i", [], TensorProto.INT64), vi("c_in", [], TensorProto.BOOL), vi("h_in", ["batch", 4])],
        [vi("c_out", [], TensorProto.BOOL), vi("h_out", ["batch", 4]), vi("s", ["batch", 4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    inits = [numpy_helper.from_array(np.array(True), "cond")]
    inputs = [vi("x", ["batch", 4])]
    if trips is None:
        inputs.append(vi("n", [], TensorProto.INT64))
    else:
        inits.append(numpy_helper.from_array(np.array(trips, np.int64), "n"))
    nodes = [helper.make_node("Loop", ["n", "cond", "x"], ["h", "scan"], body=body),
             helper.make_node("Transpose", ["scan"], ["y"], perm=[1, 0, 2])]
    graph = helper.make_graph(nodes, "g", inputs, [vi("h", ["batch", 4]), vi("y", ["batch", "T", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def vad_model():
    """Silero-VAD-like: If(sr == 16000) runs an LSTM over x [batch, 5, 4] (time-major inside, as exported), else
    a plain ReduceMean; the output is [batch, 3] either way."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def vi(name, shape, t=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, t, shape)

    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
         for n, s in (("W", (1, 12, 4)), ("R", (1, 12, 3)), ("B", (1, 24)), ("P3", (4, 3)))]
    then = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
         helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "yh"], hidden_size=3),
         helper.make_node("Squeeze", ["yh", "ax0"], ["t1"])],
        "then", [], [vi("t1", ["batch", 3])], [numpy_helper.from_array(np.array([0], np.int64), "ax0")])
    els = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
                             helper.make_node("MatMul", ["m", "P3"], ["e0"])], "else", [], [vi("e0", ["batch", 3])])
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(16000, np.int64))),
             helper.make_node("Equal", ["sr", "k"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=els)]
    graph = helper.make_graph(nodes, "g", [vi("x", ["batch", 5, 4]), vi("sr", [], TensorProto.INT64)],
                              [vi("y", ["batch", 3])], w)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
