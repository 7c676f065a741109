"""Transformer-era fused ops: Attention, RotaryEmbedding and friends, composed from plain TF ops.

Every matrix product goes through `_bmm`, so BatchMatMulV2 never broadcasts (docs/onednn.md). Grouped-query heads are
not repeated: the query heads that share a key/value head are folded into its row axis, so one BatchMatMulV2 with
equal batch dims serves the whole group. Recurrences (LinearAttention) are solved in closed form: the graph stays
flat, with no While loop.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from onnx import helper

from graphport.emit.tf.context import EmitContext, channels_last, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.linalg import _broadcast_batch, _dims
from graphport.emit.tf.registry import op
from graphport.ir.graph import Node

Dim = int | tf.Tensor  # a static size, or a runtime int32 scalar


def _reshape(x: tf.Tensor, dims: list[Dim]) -> tf.Tensor:
    """Reshape to `dims` (ints and runtime scalars); a lone runtime dim becomes -1, so the usual case (only the
    batch unknown) packs no runtime shape."""
    runtime = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    if len(runtime) == 1:
        dims = [-1 if i == runtime[0] else d for i, d in enumerate(dims)]
    return tf.reshape(x, dims)


def _same_batch(ctx: EmitContext, names: list[str]) -> bool:
    """Whether the IR gives all of `names` one leading dim (one number, or one symbol such as the batch)."""
    dims = {ctx.graph.values[n].shape[0] if n in ctx.graph.values and ctx.graph.values[n].shape else None
            for n in names}
    return len(dims) == 1 and None not in dims


def _bmm(a: tf.Tensor, b: tf.Tensor, same: bool, **adjoint: bool) -> tf.Tensor:
    """BatchMatMulV2 on operands whose batch dims are equal: known equal to TF, or unknown to TF where `same`
    says they derive from one ONNX batch dim; anything else is broadcast explicitly first, since oneDNN's kernel
    corrupts the heap when it broadcasts itself (docs/onednn.md)."""
    pairs = list(zip(a.shape.as_list()[:-2], b.shape.as_list()[:-2]))
    equal = a.shape.rank == b.shape.rank and all(x == y and (x is not None or same) for x, y in pairs)
    if not equal:
        a, b = _broadcast_batch(a, b)
    return tf.raw_ops.BatchMatMulV2(x=a, y=b, **adjoint)


def _split_heads(x: tf.Tensor, heads: int) -> tf.Tensor:
    """[B, S, heads*D] -> [B, heads, S, D], the packed 3-D form the fused ops accept besides 4-D."""
    batch, seq, hidden = _dims(x)
    if not isinstance(hidden, int) or hidden % heads:
        raise Decline(f"packed hidden size {hidden} that {heads} heads do not divide")
    return tf.transpose(_reshape(x, [batch, seq, heads, hidden // heads]), [0, 2, 1, 3])


def _merge_heads(x: tf.Tensor) -> tf.Tensor:
    """[B, H, S, D] -> [B, S, H*D], the inverse of `_split_heads`."""
    batch, heads, seq, width = _dims(x)
    return _reshape(tf.transpose(x, [0, 2, 1, 3]), [batch, seq, heads * width])


def _widened(x: tf.Tensor) -> tf.Tensor:
    """16-bit floats as float32: the products and the softmax then round once, at the end, which is what ONNX's
    expected outputs agree with to 1e-3 (sums rounded to float16 term by term are off by an ulp), and TF's CPU
    kernels for half types are emulated, so float32 is also the faster."""
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


def _neg_inf(dtype: tf.DType) -> tf.Tensor:
    return tf.constant(-np.inf, dtype)


@op("Attention", since=23)
def attention(ctx: EmitContext, node: Node) -> None:
    """softmax(Q K^T * scale + bias) V over [B, H, S, D] heads. One handler serves 23 to 25: opset 24 adds the
    nonpad_kv_seqlen input and 25 the window attributes, each absent (so ignored) in older nodes.

    The query heads of one key/value head (GQA) become extra rows, [B, Hkv, G*Sq, D]: the reference repeats K and
    V G times instead, which costs memory and gives the same products. A query row that every key is barred from
    is zero rather than NaN, decided on the bias as the spec's errata says."""
    mode = node.attrs["qk_matmul_output_mode"]
    if mode not in range(4):
        raise Decline(f"Attention qk_matmul_output_mode {mode}")
    q, k, v = (ctx.onnx_order(n) for n in node.inputs[:3])
    packed = q.shape.rank == 3
    if packed:
        hq, hkv = node.attrs.get("q_num_heads"), node.attrs.get("kv_num_heads")
        if not hq or not hkv:
            raise Decline("3-D Attention without q_num_heads and kv_num_heads")
        q, k, v = _split_heads(q, hq), _split_heads(k, hkv), _split_heads(v, hkv)
    past_len = 0
    if opt_input(node, 4):
        past_k = ctx.onnx_order(node.inputs[4])
        past_len = _dims(past_k)[2]
        k, v = tf.concat([past_k, k], 2), tf.concat([ctx.onnx_order(node.inputs[5]), v], 2)
    for name, t in zip(node.outputs[1:3], (k, v)):
        if name:
            ctx.set(name, t)
    out_dtype = q.dtype
    q, k, v = (_widened(t) for t in (q, k, v))
    batch, hq, sq, width = _dims(q)
    hkv, skv = _dims(k)[1:3]
    if not isinstance(hq, int) or not isinstance(hkv, int) or hq % hkv:
        raise Decline(f"Attention with {hq} query heads over {hkv} key/value heads")
    scale = node.attrs.get("scale")
    if scale is None:
        if not isinstance(width, int):
            raise Decline("Attention's default scale over a head size known only at run time")
        scale = 1 / np.sqrt(width)
    root = tf.constant(np.sqrt(scale), q.dtype)  # the spec scales Q and K each by sqrt(scale), against overflow
    grouped = _reshape(q * root, [batch, hkv, hq // hkv * sq, width]) if hq != hkv else q * root
    same = _same_batch(ctx, node.inputs[:3])
    raw = _bmm(grouped, k * root, same, adj_y=True)
    raw = _reshape(raw, [batch, hq, sq, skv]) if hq != hkv else raw
    cap = node.attrs["softcap"]
    capped = tf.tanh(raw / tf.constant(cap, raw.dtype)) * tf.constant(cap, raw.dtype) if cap > 0 else raw
    bias, guard = _attention_bias(ctx, node, q.dtype, sq, skv, past_len)
    scores = capped + bias if bias is not None else capped
    precision = node.attrs.get("softmax_precision")
    work = tf.cast(scores, tf.as_dtype(helper.tensor_dtype_to_np_dtype(precision))) if precision else scores
    probs = tf.nn.softmax(work)
    if guard is not None:
        probs = tf.where(guard, tf.zeros([], probs.dtype), probs)
    probs = tf.cast(probs, q.dtype)
    grouped = _reshape(probs, [batch, hkv, hq // hkv * sq, skv]) if hq != hkv else probs
    y = _bmm(grouped, v, same)
    y = _reshape(y, [batch, hq, sq, _dims(v)[3]]) if hq != hkv else y
    ctx.set(node.outputs[0], tf.cast(_merge_heads(y) if packed else y, out_dtype))
    if len(node.outputs) > 3 and node.outputs[3]:
        ctx.set(node.outputs[3], tf.cast((raw, capped, scores, probs)[mode], out_dtype))


def _attention_bias(ctx: EmitContext, node: Node, dtype: tf.DType, sq: Dim, skv: Dim,
                    past_len: Dim) -> tuple[tf.Tensor | None, tf.Tensor | None]:
    """The additive bias (broadcastable to [B, H, Sq, Skv]) and the fully-masked-row guard ([..., Sq, 1] bool).

    Positions come from the causal frontier and windows, both bottom-right aligned at an offset (the past length,
    or nonpad_kv_seqlen - Sq per batch for an external cache), and the nonpad padding; attn_mask adds on. The
    guard is left out only for a causal frontier alone, which always keeps key 0 for every query."""
    causal, mask_name, nonpad_name = node.attrs["is_causal"], opt_input(node, 3), opt_input(node, 6)
    left, right = node.attrs.get("left_window_size", -1), node.attrs.get("right_window_size", -1)
    nonpad = tf.cast(ctx.onnx_order(nonpad_name), tf.int32) if nonpad_name else None
    allowed = []
    if causal or left >= 0 or right >= 0:
        offset = tf.reshape(nonpad - sq, [-1, 1, 1, 1]) if nonpad is not None else past_len
        ahead = tf.range(sq)[:, None] + offset - tf.range(skv)  # how far the query's position is past the key
        allowed += [ahead >= 0] if causal else []
        allowed += [ahead <= left] if left >= 0 else []
        allowed += [-ahead <= right] if right >= 0 else []
    if nonpad is not None:
        allowed.append((tf.range(skv) < nonpad[:, None])[:, None, None])  # [B, 1, 1, Skv]
    bias = None
    if allowed:
        ok = allowed[0]
        for more in allowed[1:]:
            ok = tf.logical_and(ok, more)
        bias = tf.where(ok, tf.zeros([], dtype), _neg_inf(dtype))
    if mask_name:
        mask = ctx.onnx_order(mask_name)
        mask = tf.where(mask, tf.zeros([], dtype), _neg_inf(dtype)) if mask.dtype == tf.bool else tf.cast(mask, dtype)
        short = mask.shape[-1]
        if not (isinstance(skv, int) and short == skv):  # a mask shorter than the keys bars the rest
            width = skv - (short if short is not None else tf.shape(mask)[-1])
            mask = tf.pad(mask, [[0, 0]] * (mask.shape.rank - 1) + [[0, width]], constant_values=-np.inf)
        bias = mask if bias is None else bias + mask
    if bias is None or not (mask_name or nonpad_name or left >= 0 or right >= 0):
        return bias, None
    return bias, tf.equal(tf.reduce_max(bias, -1, keepdims=True), _neg_inf(dtype))


@op("RotaryEmbedding", since=23)
def rotary_embedding(ctx: EmitContext, node: Node) -> None:
    """Rotates pairs of features by per-position angles: halves (x_i, x_i+D/2) or, interleaved, neighbours
    (x_2i, x_2i+1); features past rotary_embedding_dim pass through. The caches are [B, S, D/2], or gathered to
    that from [positions, D/2] by position_ids."""
    x = ctx.onnx_order(node.inputs[0])
    cos, sin = (ctx.onnx_order(n) for n in node.inputs[1:3])
    if opt_input(node, 3):
        pos = ctx.onnx_order(node.inputs[3])
        cos, sin = tf.gather(cos, pos), tf.gather(sin, pos)
    packed = x.shape.rank == 3
    if packed:
        if not node.attrs.get("num_heads"):
            raise Decline("3-D RotaryEmbedding without num_heads")
        batch, seq, hidden = _dims(x)
        if not isinstance(hidden, int):
            raise Decline("3-D RotaryEmbedding over a hidden size known only at run time")
        heads = _reshape(x, [batch, seq, node.attrs["num_heads"], hidden // node.attrs["num_heads"]])  # [B,S,H,D]
        cos, sin = cos[:, :, None], sin[:, :, None]
    else:
        heads, cos, sin = x, cos[:, None], sin[:, None]  # [B, H, S, D]
    width = heads.shape[-1]
    if width is None:
        raise Decline("RotaryEmbedding over a head size known only at run time")
    dim = node.attrs["rotary_embedding_dim"] or width
    half = dim // 2
    turned = heads[..., :dim] if dim < width else heads
    if node.attrs["interleaved"]:
        pairs = _reshape(turned, [*_dims(turned)[:-1], half, 2])
        x1, x2 = pairs[..., 0], pairs[..., 1]
    else:
        x1, x2 = turned[..., :half], turned[..., half:]
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if node.attrs["interleaved"]:
        turned = _reshape(tf.stack([real, imag], -1), _dims(turned))
    else:
        turned = tf.concat([real, imag], -1)
    y = tf.concat([turned, heads[..., dim:]], -1) if dim < width else turned
    ctx.set(node.outputs[0], _reshape(y, _dims(x)) if packed else y)


@op("SwiGLU", since=28)
def swiglu(ctx: EmitContext, node: Node) -> None:
    """Swish-gated product A * sigmoid(alpha * A) * B (ONNX gives A and B one shape; nothing broadcasts)."""
    a, b = (ctx.onnx_order(n) for n in node.inputs[:2])
    alpha = node.attrs["alpha"]
    gate = tf.sigmoid(a * tf.constant(alpha, a.dtype) if alpha != 1.0 else a)
    ctx.set(node.outputs[0], a * gate * b)


@op("TensorScatter", since=24)
def tensor_scatter(ctx: EmitContext, node: Node) -> None:
    """A KV-cache write: `update` lands at write_indices[b] (+ its position along `axis`, modulo the cache length
    when circular). Written as a gather, not a scatter: each cache slot asks which update position (if any)
    lands on it, so the graph needs no index tuples and no ScatterNd."""
    past, update = (ctx.onnx_order(n) for n in node.inputs[:2])
    rank = past.shape.rank
    axis = node.attrs["axis"] % rank
    if axis == 0:
        raise Decline("TensorScatter along the batch axis")
    slots, length = _dims(past)[axis], _dims(update)[axis]
    src = tf.range(slots)
    if opt_input(node, 2):
        src = src[None, :] - tf.cast(ctx.onnx_order(node.inputs[2]), tf.int32)[:, None]  # [B, slots]
    if node.attrs["mode"] == "circular":
        src = tf.math.floormod(src, slots)
    valid = tf.logical_and(src >= 0, src < length)
    picked = tf.gather(update, tf.clip_by_value(src, 0, length - 1), axis=axis, batch_dims=src.shape.rank - 1)
    lead = (slice(None), *[None] * (axis - 1)) if src.shape.rank == 2 else ()
    valid = valid[(*lead, ..., *[None] * (rank - axis - 1))]  # lined up with the cache's batch and axis
    ctx.set(node.outputs[0], tf.where(valid, picked, past))


_BITCAST_TYPES = {tf.bool, tf.int8, tf.uint8, tf.int16, tf.uint16, tf.float16, tf.bfloat16, tf.int32, tf.uint32,
                  tf.float32, tf.int64, tf.uint64, tf.float64}  # TF 2.5's Bitcast types, plus bool (via uint8)


@op("BitCast", since=26)
def bitcast(ctx: EmitContext, node: Node) -> None:
    """The same bytes read as another type of one width. TF's Bitcast has no bool, so bool goes through uint8
    (0 and 1 are its bytes)."""
    x = ctx.onnx_order(node.inputs[0])
    try:
        target = tf.as_dtype(helper.tensor_dtype_to_np_dtype(node.attrs["to"]))
    except TypeError:
        target = None
    for dtype in (x.dtype, target):
        if dtype not in _BITCAST_TYPES:
            raise Decline(f"BitCast of {dtype.name if dtype else 'an ONNX type TF lacks'} (TF 2.5's Bitcast has none)")
    if x.dtype.size != target.size:
        raise Decline(f"BitCast from {x.dtype.name} to {target.name}: the widths differ")
    x = tf.cast(x, tf.uint8) if x.dtype == tf.bool else x
    via = tf.uint8 if target == tf.bool else target
    y = tf.bitcast(x, via) if x.dtype != via else x
    ctx.set(node.outputs[0], tf.not_equal(y, tf.zeros([], tf.uint8)) if target == tf.bool else y)


@op("CausalConvWithState", since=27)
def causal_conv_with_state(ctx: EmitContext, node: Node) -> None:
    """A depthwise 1-D conv over [past_state (or zeros), input], channels last, as one DepthwiseConv2dNative on a
    unit height; present_state is the last k-1 positions of that padded sequence."""
    x = ctx.channels_last(node.inputs[0])  # [B, L, C]
    dtype = x.dtype
    weight = ctx.const(node.inputs[1])  # [C, 1, k]
    if weight is not None:
        channels, _, k = weight.shape
        filt = tf.constant(weight.reshape(channels, k).T.reshape(1, k, channels, 1))
    else:
        weight = ctx.onnx_order(node.inputs[1])
        channels, _, k = weight.shape.as_list()
        if channels is None or k is None:
            raise Decline("CausalConvWithState with a runtime kernel of unknown size")
        filt = tf.reshape(tf.transpose(tf.reshape(weight, [channels, k])), [1, k, channels, 1])
    if opt_input(node, 3):
        padded = tf.concat([ctx.channels_last(node.inputs[3]), x], 1)
    else:
        padded = tf.pad(x, [[0, 0], [k - 1, 0], [0, 0]]) if k > 1 else x
    y = tf.raw_ops.DepthwiseConv2dNative(input=_widened(padded)[:, None], filter=_widened(filt),
                                         strides=[1, 1, 1, 1], padding="VALID")[:, 0]
    if opt_input(node, 2):
        y = y + _widened(ctx.onnx_order(node.inputs[2]))
    if node.attrs["activation"] in ("silu", "swish"):
        y = y * tf.sigmoid(y)
    elif node.attrs["activation"] != "none":
        raise Decline(f"CausalConvWithState activation '{node.attrs['activation']}'")
    ctx.set(node.outputs[0], tf.cast(y, dtype), channels_last(3))
    if len(node.outputs) > 1 and node.outputs[1]:
        ctx.set(node.outputs[1], padded[:, -(k - 1):] if k > 1 else padded[:, :0], channels_last(3))


@op("LinearAttention", since=27)
def linear_attention(ctx: EmitContext, node: Node) -> None:
    """The state recurrence S_t = a_t S_{t-1} + k_t w_t^T, o_t = scale q_t^T S_t, unrolled in closed form.

    With G_t the running sum of the log-decays (0 ungated), S_t = e^{G_t} S_0 + sum_{s<=t} e^{G_t-G_s} k_s w_s^T.
    Plain rules write w = v; delta rules write w_t = beta_t (v_t - (a_t S_{t-1})^T k_t), which by the same
    unrolling is a unit lower-triangular system in all w at once (one MatrixTriangularSolve). Everything is
    [T, T] per head, as softmax attention is: a per-key-dim decay makes that [T, T, d_k]."""
    rule = node.attrs["update_rule"]
    hq, hkv = node.attrs.get("q_num_heads"), node.attrs.get("kv_num_heads")
    if not hq or not hkv or hq % hkv:
        raise Decline(f"LinearAttention with {hq} query heads over {hkv} key/value heads")
    q, k, v = (_split_heads(tf.cast(ctx.onnx_order(n), tf.float32), h)
               for n, h in zip(node.inputs[:3], (hq, hkv, hkv)))
    same = _same_batch(ctx, [n for n in node.inputs[:4] if n])
    batch, _, steps, dk = _dims(q)
    q = _reshape(q, [batch, hkv, hq // hkv, steps, dk])  # the query heads of one key/value head
    positions = tf.range(steps)
    later = positions[:, None] >= positions[None, :]  # [t, s]: s at or before t
    gamma = None
    if rule in ("gated", "gated_delta"):
        decay = ctx.onnx_order(node.inputs[4])
        logs = tf.cumsum(_split_heads(tf.cast(decay, tf.float32), hkv), axis=2)  # [B, Hkv, T, 1 or d_k]
        gap = logs[:, :, :, None] - logs[:, :, None]  # G_t - G_s, barred above the diagonal before exp
        between = tf.exp(tf.where(later[..., None], gap, _neg_inf(tf.float32)))  # [B, Hkv, T, T, 1 or d_k]
        gamma = tf.exp(logs)
    elif rule in ("linear", "delta"):
        between = tf.cast(later, tf.float32)[..., None]
    else:
        raise Decline(f"LinearAttention update_rule '{rule}'")
    past = tf.cast(ctx.onnx_order(node.inputs[3]), tf.float32) if opt_input(node, 3) else None
    write = v
    if rule.endswith("delta"):
        beta = ctx.onnx_order(node.inputs[5])
        beta = tf.transpose(tf.cast(beta, tf.float32), [0, 2, 1])[..., None]  # [B, Hkv or 1, T, 1]
        if past is not None:
            write = write - _bmm(k * gamma if gamma is not None else k, past, same)
        overlap = _decayed_dot(k, k, between, same)
        diagonal = tf.equal(positions[:, None], positions[None, :])
        system = tf.where(tf.logical_and(later, tf.logical_not(diagonal)), beta * overlap,
                          tf.cast(diagonal, tf.float32))
        write = tf.linalg.triangular_solve(system, beta * write, lower=True)
    scores = _decayed_dot(q, k[:, :, None], between[:, :, None] if between.shape.rank == 5 else between, same)
    out = _bmm(_reshape(scores, [batch, hkv, hq // hkv * steps, steps]), write, same)
    if past is not None:
        seen = q * gamma[:, :, None] if gamma is not None else q
        out = out + _bmm(_reshape(seen, [batch, hkv, hq // hkv * steps, dk]), past, same)
    scale = node.attrs["scale"] or 1 / np.sqrt(dk)
    out = _merge_heads(_reshape(out * tf.constant(scale, tf.float32), [batch, hq, steps, _dims(v)[3]]))
    ctx.set(node.outputs[0], tf.cast(out, ctx.raw(node.inputs[0]).dtype))
    state = _bmm(k * between[:, :, -1] if between.shape.rank == 5 else k, write, same, adj_x=True)
    if past is not None:
        state = state + (past * gamma[:, :, -1][..., None] if gamma is not None else past)
    if len(node.outputs) > 1 and node.outputs[1]:
        dtype = ctx.raw(node.inputs[3] if past is not None else node.inputs[0]).dtype
        ctx.set(node.outputs[1], tf.cast(state, dtype))


def _decayed_dot(a: tf.Tensor, b: tf.Tensor, between: tf.Tensor, same: bool) -> tf.Tensor:
    """sum_d a[t, d] b[s, d] between[t, s, d]: a matrix product scaled afterwards when the decay is one per head
    (d = 1), else an elementwise product reduced over d (a per-key-dim decay does not factor out of the sum)."""
    if between.shape[-1] == 1:
        return _bmm(a, b, same, adj_y=True) * between[..., 0]
    return tf.reduce_sum(a[..., :, None, :] * b[..., None, :, :] * between, -1)
