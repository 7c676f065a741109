"""Indexing and selection ops (graphport/emit/tf/indexing.py) against ONNX Runtime.

A decoder block exported by torch (causal mask via triu/tril, a TopK head, a ScatterND cache write) converts with
zero flags; then one small hand-built model per op, each with a dynamic batch. Every model is converted by
`graphport.convert` (which verifies it against ONNX Runtime on seeded inputs) and then run in TF on hand-picked
inputs that seeded ones rarely hit (negative and duplicate indices, ties, out-of-range one-hot indices, outputs
whose length depends on the data), compared with ONNX Runtime again. graphport's own output is never the reference.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from ort_equal import assert_session_equals_ort
from torch import nn

import graphport
from graphport.core.errors import UnsupportedModel
from graphport.runtime import load

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

BATCHES = (1, 3)
F, I64, I32, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL


def _vi(name: str, elem: int, shape: list | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes: list, inputs: list, outputs: list[str], opset: int, inits: dict | None = None) -> onnx.ModelProto:
    """Outputs are named only; their types and (symbolic) shapes come from ONNX shape inference."""
    graph = helper.make_graph(nodes, "g", inputs, [onnx.ValueInfoProto(name=o) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.value_info}
    for out in model.graph.output:
        out.CopyFrom(inferred[out.name])
    return model


def _converts_like_ort(model: onnx.ModelProto, tmp_path, feeds: list[dict]) -> None:
    """Convert with zero flags (verified by graphport at BATCHES), then compare TF with ORT on each of `feeds`.
    Outputs whose length depends on the data (NonZero, Unique) are compared with ORT, not for batch invariance."""
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    report = graphport.convert(path, tmp_path / "out", batch_sizes=BATCHES)
    assert report.ok, report.verification.to_json()
    assert_session_equals_ort(path, tmp_path / "out", feeds, atol=1e-6)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- the decoder block --------------------------------------------------------------------------------------------
class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention + MLP over [batch, time, d], writing its output into a KV-style cache at
    positions start..start+time (`cache[:, a:b] = h`, exported as ScatterND) and sampling candidates from the last
    step's logits with torch.topk. The causal mask is built on the scores (triu) so that Trilu runs at run time
    rather than being folded; tril zeroes what softmax left above the diagonal."""

    def __init__(self, d: int = 32, heads: int = 4, vocab: int = 40, top: int = 5, start: int = 3):
        super().__init__()
        self.heads, self.top, self.start = heads, top, start
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor, cache: torch.Tensor):
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in self.qkv(self.norm1(x)).split(d, dim=-1))
        scores = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5
        scores = scores + torch.triu(torch.full_like(scores, -1e4), diagonal=1)
        attn = torch.tril(scores.softmax(-1))
        h = x + self.proj((attn @ v).transpose(1, 2).reshape(b, t, d))
        h = h + self.ff(self.norm2(h))
        cache = cache.clone()
        cache[:, self.start:self.start + t] = h
        values, tokens = torch.topk(self.head(h[:, -1]), self.top)
        return values.softmax(-1), tokens, cache


def test_decoder_block_converts(tmp_path):
    torch.manual_seed(0)
    net = DecoderBlock().eval()
    path = tmp_path / "decoder.onnx"
    names = ["x", "cache", "probs", "tokens", "new_cache"]
    with torch.no_grad():
        torch.onnx.export(net, (torch.randn(2, 6, 32), torch.randn(2, 12, 32)), str(path), opset_version=17,
                          dynamo=False, input_names=names[:2], output_names=names[2:],
                          dynamic_axes={n: {0: "batch"} for n in names})
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Trilu", "TopK", "ScatterND"} <= ops, ops
    report = graphport.convert(path, tmp_path / "out", batch_sizes=(1, 3))
    assert report.ok, report.verification.to_json()
    assert {"TopKV2", "TensorScatterUpdate", "SelectV2"} <= set(report.tf_ops), report.tf_ops
    rng = _rng(5)
    feed = {"x": rng.standard_normal((5, 6, 32)).astype(np.float32),
            "cache": rng.standard_normal((5, 12, 32)).astype(np.float32)}
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)
    session = load(tmp_path / "out", backend="session")
    try:
        got = session.run(feed)
    finally:
        session.close()
    np.testing.assert_array_equal(got["tokens"], want[1])
    np.testing.assert_allclose(got["probs"], want[0], atol=1e-5)
    np.testing.assert_allclose(got["new_cache"], want[2], atol=1e-5)


# ---- gathers ------------------------------------------------------------------------------------------------------
def test_gather_elements(tmp_path):
    """A runtime index per element (axis 2), and constant negative indices smaller than the data on other axes."""
    nodes = [helper.make_node("GatherElements", ["x", "i"], ["y"], axis=2),
             helper.make_node("GatherElements", ["x", "c"], ["z"], axis=-1)]
    model = _model(nodes, [_vi("x", F, ["batch", 4, 10]), _vi("i", I64, ["batch", 4, 3])], ["y", "z"], 13,
                   {"c": np.array([[[-1, 0, -10], [9, -2, 3]]], np.int64)})
    rng = _rng()
    feeds = [{"x": rng.standard_normal((b, 4, 10)).astype(np.float32), "i": rng.integers(-10, 10, (b, 4, 3))}
             for b in (2, 5)]
    _converts_like_ort(model, tmp_path, feeds)


def test_gather_nd(tmp_path):
    """batch_dims=1 with runtime tuples, and batch_dims=0 with constant tuples that index the dynamic batch axis
    from the end (-1 is the last row whatever the batch)."""
    nodes = [helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=1),
             helper.make_node("GatherND", ["x", "c"], ["z"])]
    model = _model(nodes, [_vi("x", F, ["batch", 10, 4]), _vi("i", I64, ["batch", 3, 1])], ["y", "z"], 13,
                   {"c": np.array([[-1, 9], [0, -10], [-1, -1]], np.int64)})
    rng = _rng(1)
    feeds = [{"x": rng.standard_normal((b, 10, 4)).astype(np.float32), "i": rng.integers(-10, 10, (b, 3, 1))}
             for b in (2, 4)]
    _converts_like_ort(model, tmp_path, feeds)


# ---- scatters -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(tmp_path, reduction):
    """Rows of a [10, batch, 3] table (the batch moved inward by Transpose). Reductions take runtime indices,
    duplicates included; "none" takes distinct constant ones, some negative (duplicates would be ill-defined)."""
    indices = ["idx"] if reduction == "none" else ["i"]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Transpose", ["u"], ["ut"], perm=[1, 0, 2]),
             helper.make_node("ScatterND", ["xt", *indices, "ut"], ["yt"], reduction=reduction),
             helper.make_node("Transpose", ["yt"], ["y"], perm=[1, 0, 2])]
    inputs = [_vi("x", F, ["batch", 10, 3]), _vi("u", F, ["batch", 4, 3])]
    inputs += [] if reduction == "none" else [_vi("i", I64, [4, 1])]
    model = _model(nodes, inputs, ["y"], 18, {"idx": np.array([[-1], [0], [4], [-3]], np.int64)})
    rng = _rng(2)
    feeds = []
    for b, idx in ((2, [[1], [-9], [1], [1]]), (4, [[-1], [9], [0], [5]])):
        feed = {"x": rng.standard_normal((b, 10, 3)).astype(np.float32),
                "u": rng.standard_normal((b, 4, 3)).astype(np.float32)}
        feeds.append(feed if reduction == "none" else {**feed, "i": np.array(idx, np.int64)})
    _converts_like_ort(model, tmp_path, feeds)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements(tmp_path, reduction):
    """Reductions take runtime indices (duplicates and negatives in the hand-picked ones). "none" scatters at each
    row's top-4 positions, distinct by construction, counted from the end (TopK index - 10)."""
    if reduction == "none":
        nodes = [helper.make_node("TopK", ["x", "four"], ["v", "top"]),
                 helper.make_node("Sub", ["top", "ten"], ["i"])]
        inputs = [_vi("x", F, ["batch", 10]), _vi("u", F, ["batch", 4])]
    else:
        nodes, inputs = [], [_vi("x", F, ["batch", 10]), _vi("u", F, ["batch", 4]), _vi("i", I64, ["batch", 4])]
    nodes.append(helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1, reduction=reduction))
    model = _model(nodes, inputs, ["y"], 18, {"four": np.array([4], np.int64), "ten": np.array(10, np.int64)})
    rng = _rng(3)
    feeds = []
    for b in (2, 5):
        feed = {"x": rng.standard_normal((b, 10)).astype(np.float32), "u": rng.standard_normal((b, 4)).astype(np.float32)}
        feeds.append(feed if reduction == "none" else {**feed, "i": rng.integers(-3, 3, (b, 4))})
    _converts_like_ort(model, tmp_path, feeds)


def test_scatter_opset9_with_topk1(tmp_path):
    """The deprecated Scatter (opset 9), at the positions of TopK-1 (k as an attribute)."""
    nodes = [helper.make_node("TopK", ["x"], ["v", "i"], k=3),
             helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=1)]
    model = _model(nodes, [_vi("x", F, ["batch", 10]), _vi("u", F, ["batch", 3])], ["y", "v"], 9)
    rng = _rng(4)
    feeds = [{"x": rng.standard_normal((b, 10)).astype(np.float32), "u": rng.standard_normal((b, 3)).astype(np.float32)}
             for b in (2, 4)]
    _converts_like_ort(model, tmp_path, feeds)


# ---- OneHot, Trilu, EyeLike, ReverseSequence ----------------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 11])
def test_one_hot(tmp_path, opset):
    """Depth 8 with indices up to 9 (out of range: all off) and, hand-picked, negative ones (counted back from
    depth by ONNX Runtime at both opsets)."""
    node = helper.make_node("OneHot", ["i", "depth", "values"], ["y"], axis=1)
    model = _model([node], [_vi("i", I64, ["batch", 4])], ["y"], opset,
                   {"depth": np.array([8], np.int64), "values": np.array([-1.0, 3.0], np.float32)})
    rng = _rng(5)
    _converts_like_ort(model, tmp_path, [{"i": rng.integers(-10, 10, (b, 4))} for b in (2, 6)])


def test_trilu(tmp_path):
    """Upper with a runtime k, lower with a constant negative k, on [batch, 4, 6]."""
    nodes = [helper.make_node("Trilu", ["x", "k"], ["up"]),
             helper.make_node("Trilu", ["x", "minus_one"], ["low"], upper=0)]
    model = _model(nodes, [_vi("x", F, ["batch", 4, 6]), _vi("k", I64, [])], ["up", "low"], 14,
                   {"minus_one": np.array(-1, np.int64)})
    rng = _rng(6)
    feeds = [{"x": rng.standard_normal((b, 4, 6)).astype(np.float32), "k": np.array(k, np.int64)}
             for b, k in ((2, -2), (3, 3), (1, 7))]
    _converts_like_ort(model, tmp_path, feeds)


def test_eye_like(tmp_path):
    """A dynamic shape (NonZero's [2, n]) takes the runtime path; a static one becomes a constant."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("EyeLike", ["nz"], ["eye"], k=1, dtype=F),
             helper.make_node("EyeLike", ["square"], ["eye_static"], k=-1)]
    model = _model(nodes, [_vi("x", BOOL, ["batch", 3])], ["eye", "eye_static"], 9,
                   {"square": np.zeros((3, 4), np.int32)})
    feeds = [{"x": _rng(7).integers(0, 2, (b, 3)).astype(bool)} for b in (1, 4, 7)]
    _converts_like_ort(model, tmp_path, feeds)


def test_reverse_sequence(tmp_path):
    """Lengths from the data (ArgMax + 1), for both axis layouts: batch first, and time first."""
    nodes = [helper.make_node("ArgMax", ["s"], ["last"], axis=1, keepdims=0),
             helper.make_node("Add", ["last", "one"], ["lens"]),
             helper.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=0, time_axis=1),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("ReverseSequence", ["xt", "lens"], ["yt"], batch_axis=1, time_axis=0)]
    model = _model(nodes, [_vi("x", F, ["batch", 5, 2]), _vi("s", F, ["batch", 5])], ["y", "yt"], 10,
                   {"one": np.array(1, np.int64)})
    rng = _rng(8)
    feeds = [{"x": rng.standard_normal((b, 5, 2)).astype(np.float32), "s": rng.standard_normal((b, 5)).astype(np.float32)}
             for b in (3, 6)]
    _converts_like_ort(model, tmp_path, feeds)


# ---- data-dependent selections ------------------------------------------------------------------------------------
def test_compress_along_axis(tmp_path):
    """Runtime conditions along the last axis: as long as the axis, shorter (the rest is dropped), and longer
    (ONNX Runtime ignores the excess)."""
    nodes = [helper.make_node("Compress", ["x", f"c{n}"], [f"y{n}"], axis=-1) for n in (6, 4, 8)]
    model = _model(nodes, [_vi("x", F, ["batch", 6])] + [_vi(f"c{n}", BOOL, [n]) for n in (6, 4, 8)],
                   ["y6", "y4", "y8"], 11)
    rng = _rng(9)
    feeds = [{"x": rng.standard_normal((b, 6)).astype(np.float32),
              **{f"c{n}": rng.integers(0, 2, n).astype(bool) for n in (6, 4, 8)}} for b in (2, 5)]
    _converts_like_ort(model, tmp_path, feeds)


def test_non_zero_and_flat_compress(tmp_path):
    """NonZero of a Relu and Compress of the flattened input by a short constant condition: lengths that depend
    on every row."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("NonZero", ["r"], ["nz"]),
             helper.make_node("Compress", ["x", "short"], ["flat"])]
    model = _model(nodes, [_vi("x", F, ["batch", 6])], ["nz", "flat"], 11,
                   {"short": np.array([True, False, False, True, True, False, True, True])})
    rng = _rng(10)
    _converts_like_ort(model, tmp_path, [{"x": rng.standard_normal((b, 6)).astype(np.float32)} for b in (1, 3, 4)])


def test_top_k(tmp_path):
    """Runtime k (the output length follows it), smallest-first over floats, and over int32 with ties (lower index
    first, as ONNX Runtime) at the type's minimum (no overflow in reversing the order)."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], largest=0),
             helper.make_node("TopK", ["n", "three"], ["nv", "ni"], axis=1, largest=0),
             helper.make_node("TopK", ["n", "three"], ["lv", "li"], axis=-1)]
    model = _model(nodes, [_vi("x", F, ["batch", 10]), _vi("k", I64, [1]), _vi("n", I32, ["batch", 10])],
                   ["v", "i", "nv", "ni", "lv", "li"], 11, {"three": np.array([3], np.int64)})
    rng = _rng(10)
    lowest = np.iinfo(np.int32).min
    feeds = []
    for b, k in ((2, 0), (4, 7), (3, 10)):
        n = rng.integers(0, 3, (b, 10)).astype(np.int32)
        n[0, [2, 7]] = lowest
        feeds.append({"x": rng.integers(-2, 2, (b, 10)).astype(np.float32), "k": np.array([k], np.int64), "n": n})
    _converts_like_ort(model, tmp_path, feeds)


def test_unique(tmp_path):
    """All four outputs: flattened sorted and in first-occurrence order, rows and columns (slices whose width is
    the dynamic batch) of a matrix, sorted lexicographically, and rows 70 wide (sorted by pairwise comparison)."""
    outs = {"flat": ["y", "first", "inverse", "counts"], "seen": ["sy", "sfirst", "sinverse", "scounts"],
            "rows": ["ry", "rfirst", "rinverse", "rcounts"], "cols": ["cy", "cfirst", "cinverse", "ccounts"],
            "wide": ["wy", "wfirst", "winverse", "wcounts"]}
    nodes = [helper.make_node("Unique", ["x"], outs["flat"]),
             helper.make_node("Unique", ["x"], outs["seen"], sorted=0),
             helper.make_node("Unique", ["x"], outs["rows"], axis=0),
             helper.make_node("Unique", ["x"], outs["cols"], axis=-1),
             helper.make_node("Unique", ["w"], outs["wide"], axis=0)]
    model = _model(nodes, [_vi("x", I64, ["batch", 4]), _vi("w", F, ["batch", 70])],
                   [n for names in outs.values() for n in names], 11)
    rng = _rng(11)
    feeds = []
    for b in (1, 6, 9):
        w = rng.integers(0, 2, (b, 70)).astype(np.float32)
        w[b // 2:] = w[:b - b // 2]  # repeated rows
        w[-1, :69] = w[0, :69]  # differs from row 0 in the last element only
        feeds.append({"x": rng.integers(0, 3, (b, 4)), "w": w})
    feeds[1]["x"][:, 2] = feeds[1]["x"][:, 0]  # a repeated column
    _converts_like_ort(model, tmp_path, feeds)


def test_gather_nd_of_unknown_tuple_length_is_declined(tmp_path):
    """The output rank depends on the tuple length (the indices' last dim): unknown, the node is refused."""
    model = _model([helper.make_node("GatherND", ["x", "i"], ["y"])],
                   [_vi("x", F, ["batch", 4, 5]), _vi("i", I64, ["batch", "k"])], ["y"], 13)
    model.graph.output[0].CopyFrom(_vi("y", F, ["batch", "m"]))  # inference leaves the rank open, the checker not
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    with pytest.raises(UnsupportedModel, match="GatherND indices whose last dim"):
        graphport.convert(path, tmp_path / "out", verify_outputs=False)
