"""Transformer-era fused ops (graphport/emit/tf/attention.py): a torch dynamo export of a decoder block, converted
and verified against ONNX Runtime, and hand-built single-op models whose converted TF graphs are compared with ONNX
Runtime (or, for ops it lacks, ONNX's reference evaluator) on the same feeds.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

import graphport
from graphport.conversion.onnx_backend import GraphportBackend
from graphport.emit.tf import build_graph_def
from graphport.ir.from_onnx import load_model, to_ir
from graphport.passes import optimize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::FutureWarning")

F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


# ---- a decoder block from torch's dynamo exporter -------------------------------------------------------------
class DecoderBlock(nn.Module):
    """RMSNorm, grouped-query causal self-attention with rotary positions, RMSNorm and a SiLU-gated MLP."""

    def __init__(self, width: int = 32, q_heads: int = 4, kv_heads: int = 2, context: int = 64):
        super().__init__()
        self.q_heads, self.kv_heads, self.head = q_heads, kv_heads, width // q_heads
        self.norm1, self.norm2 = nn.RMSNorm(width), nn.RMSNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * kv_heads * self.head)
        self.proj = nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(2 * width, width)
        inv = 1.0 / 10000 ** (torch.arange(0, self.head, 2).float() / self.head)
        angles = torch.outer(torch.arange(context).float(), inv)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, s, self.q_heads, self.head).transpose(1, 2)
        k, v = (t.view(b, s, self.kv_heads, self.head).transpose(1, 2) for t in self.kv(h).chunk(2, -1))
        pos = torch.arange(s).expand(b, s)
        q = torch.onnx.ops.rotary_embedding(q, self.cos, self.sin, pos)
        k = torch.onnx.ops.rotary_embedding(k, self.cos, self.sin, pos)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, s, d))
        gate, up = self.up(self.norm2(x)).chunk(2, -1)
        return x + self.down(F.silu(gate) * up)


def export_dynamo_block(path) -> None:
    """The block through torch's dynamo exporter at opset 23, with a dynamic batch and sequence length."""
    torch.manual_seed(0)
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 1: torch.export.Dim("seq", min=2, max=64)}
    with torch.no_grad():
        torch.onnx.export(DecoderBlock().eval(), (torch.randn(2, 8, 32),), str(path), dynamo=True,
                          opset_version=23, dynamic_shapes={"x": dims})


def test_dynamo_decoder_block_converts(tmp_path):
    """Dynamo at opset 23 emits Attention, RotaryEmbedding and RMSNormalization for this block (a hand-written
    rotate-half RoPE would come out as Slice/Mul/Concat instead; torch.onnx.ops.rotary_embedding keeps it fused).
    graphport.convert verifies against ONNX Runtime at two batch sizes and two sequence lengths."""
    path = tmp_path / "block.onnx"
    export_dynamo_block(path)
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    assert ops["Attention"] == 1 and ops["RotaryEmbedding"] == 2 and ops["RMSNormalization"] == 2, ops
    report = graphport.convert(path, tmp_path / "out", batch_sizes=(1, 3))
    assert report.ok, report.verification.to_json()
    assert {c.batch for c in report.verification.checks} == {1, 3}
    assert max(c.max_abs for c in report.verification.checks) < 1e-4


# ---- single-op models ---------------------------------------------------------------------------------------
def _model(op_type: str, opset: int, inputs: dict[str, np.ndarray], outputs: list[str],
           consts: dict[str, np.ndarray] | None = None, **attrs) -> onnx.ModelProto:
    """One `op_type` node; `inputs` are graph inputs with a symbolic batch (dim 0) unless 0-d, `consts`
    initializers. Input order is the node's: names missing from both dicts are left out (optional inputs)."""
    consts = consts or {}
    names = list(inputs) + list(consts)
    order = attrs.pop("order", names)
    node = helper.make_node(op_type, order, outputs, **attrs)
    graph_in = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                              ["N", *v.shape[1:]] if v.ndim else []) for k, v in inputs.items()]
    graph_out = [onnx.ValueInfoProto(name=o) for o in outputs if o]  # typed by ONNX's shape inference
    graph = helper.make_graph([node], op_type, graph_in, graph_out,
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _agree(model: onnx.ModelProto, feeds: dict[str, np.ndarray], reference: str = "ort",
           rtol: float = 1e-4, atol: float = 1e-5) -> list[np.ndarray]:
    """The converted graph's outputs against ONNX Runtime's (or onnx.reference's) on the same feeds."""
    if reference == "ort":
        expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    else:
        expected = ReferenceEvaluator(model).run(None, feeds)
    got = GraphportBackend.prepare(model).run(feeds)
    assert len(got) == len(expected)
    for name, g, e in zip([o.name for o in model.graph.output], got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, (name, g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=name)
    return got


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _batchmatmuls_never_broadcast(model: onnx.ModelProto) -> int:
    """Every BatchMatMulV2 in the emitted graph has operands of one rank with the same batch dims (None being one
    ONNX symbol), or explicitly broadcast ones (docs/onednn.md). Returns how many there are."""
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(build_graph_def(optimize(to_ir(load_model(model)[0]))).graph_def, name="")
    found = [op for op in g.get_operations() if op.type == "BatchMatMulV2"]
    for op in found:
        a, b = op.inputs
        assert a.shape.rank == b.shape.rank, (a.shape, b.shape)
        assert a.shape.as_list()[:-2] == b.shape.as_list()[:-2] or {a.op.type, b.op.type} == {"BroadcastTo"}
    return len(found)


@pytest.mark.parametrize("mask_keys", [6, 4])
def test_attention_3d_gqa_float_mask_softcap(mask_keys):
    """Packed [B, S, H*D] inputs, 4 query heads over 2 key/value heads, a float mask, softcap and an explicit scale;
    qk_matmul_output after softcap (mode 1). A mask shorter than the keys bars the rest (the spec allows it, ONNX
    Runtime refuses it, so that one is against the reference)."""
    feeds = {"Q": _rand(3, 4, 16), "K": _rand(3, 6, 8, seed=1), "V": _rand(3, 6, 12, seed=2)}
    mask = _rand(4, mask_keys, seed=3)
    model = _model("Attention", 23, feeds, ["Y", "", "", "qk"], {"mask": mask}, q_num_heads=4, kv_num_heads=2,
                   softcap=2.0, scale=0.3, qk_matmul_output_mode=1)
    _agree(model, feeds, reference="ort" if mask_keys == 6 else "onnx")
    assert _batchmatmuls_never_broadcast(model) == 2


@pytest.mark.parametrize("mode", [0, 2, 3])
def test_attention_4d_causal_bool_mask_with_cache(mode):
    """4-D heads with a KV cache: present_key/value are past + new, the causal frontier is offset by the past
    length (bottom-right), and a boolean mask intersects it. Mode 2 shows the bias, where ONNX Runtime writes the
    lowest float for a barred key and the spec -inf: that one is against the reference."""
    feeds = {"Q": _rand(3, 2, 3, 4), "K": _rand(3, 2, 3, 4, seed=1), "V": _rand(3, 2, 3, 4, seed=2),
             "past_key": _rand(3, 2, 5, 4, seed=3), "past_value": _rand(3, 2, 5, 4, seed=4)}
    mask = np.random.default_rng(5).random((3, 8)) > 0.3
    mask[:, 0] = True  # no fully masked row: ONNX Runtime's answer for one is not the spec's zero row
    model = _model("Attention", 23, feeds, ["Y", "present_key", "present_value", "qk"], {"mask": mask},
                   order=["Q", "K", "V", "mask", "past_key", "past_value"], is_causal=1, qk_matmul_output_mode=mode)
    _agree(model, feeds, reference="onnx" if mode == 2 else "ort")


def test_attention_24_nonpad_decode_gqa():
    """Opset 24's external cache: one decode query per batch row over a static cache, nonpad_kv_seqlen valid keys
    each, causal at offset nonpad - 1; the keys past nonpad are padding."""
    feeds = {"Q": _rand(3, 4, 1, 8), "K": _rand(3, 2, 6, 8, seed=1), "V": _rand(3, 2, 6, 8, seed=2),
             "nonpad": np.array([6, 2, 4], np.int64)}
    model = _model("Attention", 24, feeds, ["Y"], order=["Q", "K", "V", "", "", "", "nonpad"], is_causal=1)
    _agree(model, feeds)


def test_attention_25_window_and_fully_masked_rows():
    """Opset 25's sliding window, and the spec's zero row where a mask bars every key (against the reference:
    ONNX Runtime's output for such rows is not the spec's)."""
    feeds = {"Q": _rand(2, 2, 5, 4), "K": _rand(2, 2, 5, 4, seed=1), "V": _rand(2, 2, 5, 4, seed=2)}
    mask = np.ones((5, 5), bool)
    mask[3] = False
    model = _model("Attention", 25, feeds, ["Y"], {"mask": mask}, is_causal=1, left_window_size=1)
    y = _agree(model, feeds, reference="onnx")[0]
    assert not np.any(y[:, :, 3]) and np.all(np.abs(y[:, :, [0, 1, 2, 4]]).sum(-1) > 0)
    no_mask = _model("Attention", 25, feeds, ["Y"], left_window_size=1, right_window_size=2)
    _agree(no_mask, feeds)


@pytest.mark.parametrize("packed, interleaved, rotary_dim, with_positions", [
    (False, 0, 0, True), (False, 1, 4, True), (True, 1, 0, False), (True, 0, 4, True)])
def test_rotary_embedding(packed, interleaved, rotary_dim, with_positions):
    """Half-split and interleaved pairs, full and partial rotation, 3-D packed heads, caches indexed by
    position_ids or given per batch and position."""
    heads, seq, width = 2, 5, 8
    half = (rotary_dim or width) // 2
    feeds = {"X": _rand(3, seq, heads * width) if packed else _rand(3, heads, seq, width)}
    if with_positions:
        angles = np.outer(np.arange(16), 1.0 / 10000 ** (np.arange(half) / half)).astype(np.float32)
        feeds["pos"] = np.random.default_rng(1).integers(0, 16, (3, seq)).astype(np.int64)
    else:
        angles = _rand(3, seq, half, seed=1)
    consts = {"cos": np.cos(angles), "sin": np.sin(angles)}
    attrs = {"num_heads": heads} if packed else {}
    model = _model("RotaryEmbedding", 23, feeds, ["Y"], consts, order=["X", "cos", "sin", *(["pos"] * with_positions)],
                   interleaved=interleaved, rotary_embedding_dim=rotary_dim, **attrs)
    _agree(model, feeds)


@pytest.mark.parametrize("mode, axis, rank", [("linear", -2, 4), ("circular", -2, 4), ("circular", 1, 3)])
def test_tensor_scatter(mode, axis, rank):
    """KV-cache writes at per-batch offsets; circular writes wrap around the cache length."""
    cache, upd = ((3, 2, 6, 4), (3, 2, 3, 4)) if rank == 4 else ((3, 6, 4), (3, 3, 4))
    feeds = {"past": _rand(*cache), "update": _rand(*upd, seed=1),
             "where": np.array([0, 3, 5 if mode == "circular" else 2], np.int64)}
    _agree(_model("TensorScatter", 24, feeds, ["present"], mode=mode, axis=axis), feeds)
    no_indices = {k: v for k, v in feeds.items() if k != "where"}
    _agree(_model("TensorScatter", 24, no_indices, ["present"], mode=mode, axis=axis), no_indices)


@pytest.mark.parametrize("x, to, reference", [
    (np.array([[1.0, -2.5], [np.inf, 3e-39]], np.float32), TensorProto.INT32, "ort"),
    (np.array([[1, -1, 15360]], np.int16), TensorProto.FLOAT16, "ort"),
    (np.array([[0.5, -7.0]]), TensorProto.UINT64, "ort"),
    (np.array([[True, False, True]]), TensorProto.UINT8, "onnx")])  # ONNX Runtime has no BitCast from bool
def test_bitcast(x, to, reference):
    feeds = {"x": x}
    _agree(_model("BitCast", 26, feeds, ["y"], to=to), feeds, reference, rtol=0, atol=0)


@pytest.mark.parametrize("activation, with_bias, with_past", [("silu", True, True), ("none", False, False),
                                                              ("swish", False, True)])
def test_causal_conv_with_state(activation, with_bias, with_past):
    feeds = {"x": _rand(3, 4, 7)}
    consts = {"w": _rand(4, 1, 3, seed=1)}
    order = ["x", "w", "b" if with_bias else "", "past" if with_past else ""]
    if with_bias:
        consts["b"] = _rand(4, seed=2)
    if with_past:
        feeds["past"] = _rand(3, 4, 2, seed=3)
    model = _model("CausalConvWithState", 27, feeds, ["y", "state"], consts, order=order, activation=activation)
    _agree(model, feeds)


@pytest.mark.parametrize("rule, decay_width, beta_width, q_heads, with_past", [
    ("linear", 0, 0, 2, False), ("gated", 1, 0, 4, True), ("delta", 0, 1, 2, True),
    ("gated_delta", 8, 2, 4, True), ("gated_delta", 1, 2, 2, False)])
def test_linear_attention(rule, decay_width, beta_width, q_heads, with_past):
    """Every update rule, per-head and per-key-dim decay, per-head and shared beta, GQA, with and without an
    initial state; against the reference's token-by-token recurrence."""
    kv_heads, steps, dk, dv = 2, 6, 8, 4
    rng = np.random.default_rng(7)
    keys = rng.standard_normal((3, steps, kv_heads, dk)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=-1, keepdims=True)  # the delta rule's usual L2-normalised keys
    feeds = {"q": _rand(3, steps, q_heads * dk), "k": keys.reshape(3, steps, -1), "v": _rand(3, steps, kv_heads * dv)}
    order = ["q", "k", "v", "past" if with_past else "", "decay" if decay_width else "", "beta" if beta_width else ""]
    if with_past:
        feeds["past"] = _rand(3, kv_heads, dk, dv, seed=4)
    if decay_width:
        feeds["decay"] = -rng.random((3, steps, kv_heads * decay_width)).astype(np.float32)
    if beta_width:
        feeds["beta"] = rng.random((3, steps, beta_width if beta_width == 1 else kv_heads)).astype(np.float32)
    model = _model("LinearAttention", 27, feeds, ["y", "state"], order=order,
                   q_num_heads=q_heads, kv_num_heads=kv_heads, update_rule=rule)
    _agree(model, feeds, reference="onnx")
    assert _batchmatmuls_never_broadcast(model) >= 2


def test_swiglu():
    """ONNX Runtime has no SwiGLU-28 (its function body needs Swish-24), so against the reference."""
    feeds = {"a": _rand(3, 5, 8), "b": _rand(3, 5, 8, seed=1)}
    _agree(_model("SwiGLU", 28, feeds, ["y"], alpha=1.702), feeds, reference="onnx")
