"""LSTM, GRU and RNN: unrolled over a sequence length known at conversion time, a v1 While loop over one known only
at run time.

Unrolling keeps the graph flat (no loop, no functions), which is what old C API hosts load fastest; the input
projection of all time steps is one MatMul, and each step adds one small MatMul for the recurrence. A dynamic
length needs a loop: TF's v1 control flow (Enter/Merge/Switch/NextIteration/Exit over a TensorArray) is plain graph
nodes, no functions, and Essentia's libtensorflow 2.5 loads such an LSTM in 8 ms and runs it at any length
(docs/dynamic_dims.md). TF 2.x builds v2 loops (a `While` op with body functions) unless told otherwise, so the loop
is built with v2 control flow switched off for its duration.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.registry import op
from graphport.ir.attrs import constant_of_shape_value
from graphport.ir.graph import Node

_ACTIVATIONS = {"Sigmoid": tf.sigmoid, "Tanh": tf.tanh, "Relu": tf.nn.relu}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def _activations(node: Node, dirs: int) -> list[list]:
    """Per direction, the activation functions; only parameter-free ones ONNX and TF define identically."""
    if node.attrs.get("activation_alpha") or node.attrs.get("activation_beta"):
        raise Decline("activation_alpha/activation_beta (parametrised recurrent activations)")
    per = len(_DEFAULT_ACTS[node.op_type])
    names = list(node.attrs.get("activations", [])) or _DEFAULT_ACTS[node.op_type] * dirs
    if len(names) == per:
        names = names * dirs
    bad = sorted({n for n in names if n not in _ACTIVATIONS})
    if bad:
        raise Decline(f"recurrent activation(s) {', '.join(bad)} (supported: {', '.join(_ACTIVATIONS)})")
    return [[_ACTIVATIONS[n] for n in names[d * per:(d + 1) * per]] for d in range(dirs)]


def _sequence(ctx: EmitContext, node: Node, batch_first: bool) -> tuple[tf.Tensor, int, int]:
    """The input, its time axis and length, read in whatever layout it is stored (no Transpose needed)."""
    name = node.inputs[0]
    perm = ctx.perm(name) or (0, 1, 2)
    x = ctx.raw(name) if perm[2] == 2 else ctx.onnx_order(name)
    perm = perm if perm[2] == 2 else (0, 1, 2)
    time_axis = perm.index(1 if batch_first else 0)
    return x, time_axis, x.shape[time_axis]


def _check_lengths(ctx: EmitContext, node: Node, steps: int) -> None:
    lens = opt_input(node, 4)
    if not lens:
        return
    arr = ctx.const(lens)
    if arr is None or arr.dtype == object:
        raise Decline("sequence_lens given at run time (per-example lengths)")
    if steps is None or np.any(arr != steps):
        raise Decline("sequence_lens shorter than the sequence (per-example lengths)")


def _state(ctx: EmitContext, name: str, d: int, batch_first: bool) -> tf.Tensor | None:
    """Direction d of an initial state ([dirs, batch, H], or [batch, dirs, H] with layout=1); None for zeros."""
    if not name:
        return None
    arr = ctx.const(name)
    if arr is not None and arr.dtype != object and not np.any(arr):
        return None
    src = ctx.graph.producers().get(name)  # torch exports zeros as ConstantOfShape([dirs, batch, H])
    if src is not None and src.op_type == "ConstantOfShape" and not np.any(constant_of_shape_value(src.attrs)):
        return None
    t = ctx.onnx_order(name)
    return t[:, d] if batch_first else t[d]


@op("LSTM", "GRU", "RNN")
def recurrent(ctx: EmitContext, node: Node) -> None:
    kind = node.op_type
    gates = _GATES[kind]
    direction = node.attrs["direction"]
    dirs = 2 if direction == "bidirectional" else 1
    peep = ctx.const(opt_input(node, 7)) if kind == "LSTM" and opt_input(node, 7) else np.zeros(1)
    if peep is None or peep.dtype == object or np.any(peep):
        raise Decline("LSTM peepholes (input P)")
    if node.attrs.get("input_forget"):  # an LSTM attribute
        raise Decline("LSTM input_forget=1 (coupled input and forget gates)")
    batch_first = bool(node.attrs.get("layout"))  # an attribute from opset 14 on
    acts = _activations(node, dirs)
    clip = node.attrs.get("clip")
    x, time_axis, steps = _sequence(ctx, node, batch_first)
    _check_lengths(ctx, node, steps)
    lbr = kind == "GRU" and node.attrs.get("linear_before_reset")  # GRU-3 on
    hidden = int(node.attrs.get("hidden_size") or 0) or ctx.shape_ints(node.inputs[2])[-1]
    w_all, in_bias, rts, rbs = _weights(ctx, node, gates, dirs, hidden)
    feats = x.shape[-1]
    flat = tf.reshape(x, [-1, feats]) if feats is not None else tf.reshape(x, [-1, tf.shape(x)[-1]])
    proj = tf.nn.bias_add(tf.raw_ops.MatMul(a=flat, b=w_all), in_bias)
    lead = x.shape.as_list()[:2]
    dims = [d if d is not None else -1 for d in lead] + [dirs * gates * hidden]
    proj = tf.reshape(proj, dims if lead.count(None) <= 1 else tf.concat([tf.shape(x)[:2], dims[2:]], 0))
    outs, last_h, last_c = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        h = _state(ctx, opt_input(node, 5), d, batch_first)
        c = _state(ctx, opt_input(node, 6), d, batch_first) if kind == "LSTM" else None
        step = partial(_step, kind, acts[d], rt=rts[d], rb=rbs[d], hidden=hidden, clip=clip, lbr=lbr)
        cols = slice(d * gates * hidden, (d + 1) * gates * hidden) if dirs > 1 else slice(None)
        run = _unrolled if steps is not None else _looped
        ys, h, c = run(proj, time_axis, steps, cols, step, h, c, reverse, hidden)
        outs.append(ys)
        last_h.append(h)
        last_c.append(c)
    _outputs(ctx, node, outs, last_h, last_c, batch_first)


def _unrolled(proj: tf.Tensor, time_axis: int, steps: int, cols: slice, step, h, c, reverse: bool, hidden: int):
    """One direction over a known length: the steps as separate ops; Y as [T, B, H]."""
    xs = tf.unstack(proj, num=steps, axis=time_axis)
    ys: list[tf.Tensor] = [None] * steps  # type: ignore[list-item]
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h, c = step(xs[t][:, cols], h, c)
        ys[t] = h
    return tf.stack(ys), h, c


@contextmanager
def v1_control_flow():
    """Build v1 loops (and v1 TensorArrays) while inside: TF 2.x reads this module flag at each call."""
    saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        yield
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved


def _looped(proj: tf.Tensor, time_axis: int, steps: None, cols: slice, step, h, c, reverse: bool, hidden: int):
    """One direction over a length known only at run time: a v1 While loop writing a TensorArray; Y as [T, B, H]."""
    xs = tf.transpose(proj[..., cols], (1, 0, 2)) if time_axis == 1 else proj[..., cols]
    length, batch = tf.shape(xs)[0], tf.shape(xs)[1]
    zeros = tf.zeros(tf.stack([batch, hidden]), proj.dtype)
    h0, c0 = (zeros if v is None else v for v in (h, c))
    with v1_control_flow():
        ys = tf.TensorArray(proj.dtype, size=length, element_shape=tf.TensorShape([None, hidden]))

        def body(t, h, c, ys):
            i = length - 1 - t if reverse else t
            h, c = step(xs[i], h, c)
            return t + 1, h, c if c is not None else c0, ys.write(i, h)

        _, h, c, ys = tf.compat.v1.while_loop(lambda t, *_: t < length, body, [tf.constant(0), h0, c0, ys])
        return ys.stack(), h, c


def _weights(ctx: EmitContext, node: Node, gates: int, dirs: int, hidden: int):
    """W of every direction as one [I, dirs*G*H] matrix with its bias, and per direction R^T and GRU's Rb_h.

    Constants are prepared now in numpy; runtime weights (as ONNX's conformance tests feed them) in-graph."""
    names = [node.inputs[1], node.inputs[2], opt_input(node, 3)]
    arrs = [ctx.const(n) if n else None for n in names]
    xp = np if all(a is not None and a.dtype != object for a, n in zip(arrs, names) if n) else None
    if xp is None:  # runtime: the same algebra on tensors
        w, r = ctx.onnx_order(names[0]), ctx.onnx_order(names[1])
        b = ctx.onnx_order(names[2]) if names[2] else tf.zeros([dirs, 2 * gates * hidden], w.dtype)
        cat, tr, const = (lambda v: tf.concat(v, 1)), tf.transpose, (lambda v: v)
    else:
        w, r = arrs[0], arrs[1]
        b = arrs[2] if names[2] else np.zeros((dirs, 2 * gates * hidden), w.dtype)
        cat, tr, const = (lambda v: np.concatenate(v, 1)), (lambda v: np.ascontiguousarray(v.T)), tf.constant
    gh = gates * hidden
    in_bias = [b[d, :gh] + b[d, gh:] for d in range(dirs)]
    if node.op_type == "GRU":  # the candidate's recurrent bias Rb_h is applied with (or inside) the reset gate
        in_bias = [cat([ib[None, :2 * hidden], b[d, None, 2 * hidden:gh]])[0] for d, ib in enumerate(in_bias)]
    w_all = cat([tr(w[d]) for d in range(dirs)])
    bias = cat([ib[None] for ib in in_bias])
    bias = bias.reshape(-1) if xp is np else tf.reshape(bias, [-1])
    rbs = [const(b[d, 2 * gh - hidden:]) if node.op_type == "GRU" else None for d in range(dirs)]
    return const(w_all), const(bias), [const(tr(r[d])) for d in range(dirs)], rbs


def _step(kind: str, act: list, xg: tf.Tensor, h, c, *, rt: tf.Tensor, rb, hidden: int, clip, lbr: bool):
    """One time step; h and c are None for a zero initial state (the recurrent MatMul is skipped)."""
    def cl(v):
        return tf.clip_by_value(v, -clip, clip) if clip is not None else v

    if kind == "LSTM":
        g = xg if h is None else xg + tf.raw_ops.MatMul(a=h, b=rt)
        i, o, f, z = tf.split(g, 4, axis=-1)
        i, o, f, z = act[0](cl(i)), act[0](cl(o)), act[0](cl(f)), act[1](cl(z))
        c = i * z if c is None else f * c + i * z
        return o * act[2](c), c
    if kind == "RNN":
        return act[0](cl(xg if h is None else xg + tf.raw_ops.MatMul(a=h, b=rt))), None
    xz, xr, xh = tf.split(xg, 3, axis=-1)
    if h is None:
        zr = tf.concat([xz, xr], -1)
        hr = rb if lbr else None
    else:
        hr = tf.raw_ops.MatMul(a=h, b=rt)
        hz, hrr, hh = tf.split(hr, 3, axis=-1)
        zr = tf.concat([xz + hz, xr + hrr], -1)
        hr = hh + rb if lbr else None
    z, r = tf.split(act[0](cl(zr)), 2, axis=-1)
    if lbr:
        cand = act[1](cl(xh + r * hr))
    elif h is None:
        cand = act[1](cl(xh + rb))
    else:
        cand = act[1](cl(xh + tf.raw_ops.MatMul(a=r * h, b=rt[:, 2 * hidden:]) + rb))
    one = tf.constant(1, cand.dtype)
    return (one - z) * cand if h is None else (one - z) * cand + z * h, None


def _outputs(ctx: EmitContext, node: Node, outs, last_h, last_c, batch_first: bool) -> None:
    """`outs` holds Y per direction as [T, B, H]. Y is [T, dirs, B, H] (layout 1: [B, T, dirs, H]); Y_h and Y_c are [dirs, B, H] ([B, dirs, H])."""
    names = list(node.outputs) + ["", "", ""]
    if names[0]:
        per_dir = [tf.transpose(ys, (1, 0, 2)) if batch_first else ys for ys in outs]
        ctx.set(names[0], tf.stack(per_dir, axis=2 if batch_first else 1))
    for name, states in ((names[1], last_h), (names[2], last_c)):
        if name:
            ctx.set(name, tf.stack(states, axis=1 if batch_first else 0))
