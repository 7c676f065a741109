"""`If`, `Loop` and `Scan` whose condition, trip count or length is known only at run time, as TF v1 control flow.

`passes.control` folds an `If` with a constant condition and unrolls a `Loop` with a constant trip count; those
stay flat. What reaches this module must decide at run time, so it becomes TF's v1 control flow: `If` a `cond`
(Switch/Merge), `Loop` and `Scan` a `while_loop` (Enter/Merge/Switch/NextIteration/Exit, scan outputs in a
TensorArray). These are plain graph nodes, no functions, all in libtensorflow 2.5's registry, and old C API hosts
load them at once (the recurrent layers' dynamic-length loop is built the same way, `recurrent.v1_control_flow`).

A body arrives as an IR graph folded by passes/bodies.py and is emitted by the ordinary handlers in a child
context that sees every value emitted so far: an outer value the body reads is captured by TF (Switch or Enter)
where it is used. Values cross the body boundary in the ONNX layout, so whatever layout a body keeps inside, its
inputs and outputs mean what ONNX says.
"""

from __future__ import annotations

import tensorflow as tf

from graphport.emit.tf.context import EmitContext, opt_input
from graphport.emit.tf.decline import Decline
from graphport.emit.tf.recurrent import v1_control_flow
from graphport.emit.tf.registry import lookup, op
from graphport.ir.graph import Dim, Graph, Node, agreed_dims


def _run(ctx: EmitContext, sub: Graph, feeds: dict[str, tf.Tensor]) -> list[tf.Tensor]:
    """Emit `sub`'s nodes with `feeds` bound to its inputs; its outputs in the ONNX layout."""
    body = ctx.child(sub)
    for name, t in feeds.items():
        body.set(name, t)
    g = tf.compat.v1.get_default_graph()
    for n in sub.nodes:
        handler = lookup(n.op_type, sub.opset_of(n), n.domain)
        if handler is None:
            raise Decline(f"node '{n.name}' ({n.op_type}) in its subgraph has no converter")
        try:
            with g.name_scope(body.op_name(n.name) + "/"):
                handler(body, n)
        except Decline as e:
            raise Decline(f"node '{n.name}' ({n.op_type}) in its subgraph: {e}") from e
    return [body.onnx_order(o) for o in sub.outputs]


def _set_results(ctx: EmitContext, node: Node, results: list[tf.Tensor]) -> None:
    """Bind the node's outputs, each through EnsureShape with the static shape known here: TF's import-time shape
    inference cannot see through a loop's back edge, so without it everything after a loop has unknown rank in
    the imported graph, and a host that sizes its outputs from the graph (Essentia) reads them wrongly."""
    for name, t in zip(node.outputs, results):
        if name:
            ctx.set(name, t if t.shape.rank is None else tf.ensure_shape(t, t.shape))


def _scalar(t: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """A one-element condition or count as a scalar of `dtype`."""
    return tf.reshape(t if t.dtype == dtype else tf.cast(t, dtype), [])


def _invariant(init: tf.Tensor, declared: list[tuple[Dim, ...] | None]) -> tf.TensorShape:
    """The shape a loop-state value keeps over all iterations: its initial static dims where the body's input and
    output agree on them (passes/bodies.py gave the body's input that shape already), unknown elsewhere."""
    if init.shape.rank is None:
        return tf.TensorShape(None)
    return tf.TensorShape(agreed_dims(init.shape.as_list(), declared))


def _pinned(outs: list[tf.Tensor], invariants: list[tf.TensorShape]) -> list[tf.Tensor]:
    """New loop state with the dims ONNX declares fixed, where TF's own inference lost them (a Slice with runtime
    bounds); a contradiction is a model whose state changes shape after all."""
    for t, inv in zip(outs, invariants):
        if not t.shape.is_compatible_with(inv):
            raise Decline(f"loop state '{t.name}' has shape {t.shape} after one iteration, not {inv}")
        t.set_shape(inv)
    return outs


def _shapes(body: Graph, names: list[str]) -> list[tuple[Dim, ...] | None]:
    return [body.values[n].shape if n in body.values else None for n in names]


def _scan_buffers(sub: Graph, names: list[str]) -> list[tf.TensorArray]:
    """One growing TensorArray per scan output, with the element shape as far as it is known."""
    buffers = []
    for name in names:
        v = sub.values.get(name)
        if v is None or v.dtype is None:
            raise Decline(f"scan output '{name}' has no known element type")
        shape = None if v.shape is None else [d if isinstance(d, int) else None for d in v.shape]
        buffers.append(tf.TensorArray(tf.as_dtype(v.dtype), size=0, dynamic_size=True,
                                      element_shape=tf.TensorShape(shape)))
    return buffers


def _stack(buffer: tf.TensorArray) -> tf.Tensor:
    """A scan output. TF cannot stack zero elements of a shape not fully static, so zero iterations give ONNX
    Runtime's empty result instead: shape [0, ...] with every dim it cannot know set to 0."""
    shape = buffer.element_shape
    if shape.is_fully_defined():
        return buffer.stack()
    empty = tf.zeros([0] if shape.rank is None else [0, *(d or 0 for d in shape.as_list())], buffer.dtype)
    return tf.compat.v1.cond(buffer.size() > 0, buffer.stack, lambda: empty)


@op("If")
def if_(ctx: EmitContext, node: Node) -> None:
    """A runtime condition: `tf.cond` in v1 form, each branch emitted inside its own cond context, so the
    untaken branch never runs. Branch outputs may differ in shape (ONNX allows it); Merge keeps what they share."""
    pred = _scalar(ctx.onnx_order(node.inputs[0]), tf.bool)
    then, other = node.attrs["then_branch"], node.attrs["else_branch"]
    with v1_control_flow():
        outs = tf.compat.v1.cond(pred, lambda: _run(ctx, then, {}), lambda: _run(ctx, other, {}), strict=True)
    _set_results(ctx, node, outs)


@op("Loop")
def loop(ctx: EmitContext, node: Node) -> None:
    """A runtime trip count `M` and/or condition: a v1 `while_loop` over (iteration, cond, state..., scan
    buffers...). ONNX's rules: `i < M` if M is given, the body's cond if the Loop's cond input is given (the body's
    cond output is otherwise only fed back); scan outputs stack the per-iteration values along a new axis 0."""
    sub: Graph = node.attrs["body"]  # folded by passes/bodies.py
    n_state = len(sub.inputs) - 2
    trip, cond = opt_input(node, 0), opt_input(node, 1)
    if not trip and not cond:
        raise Decline("a Loop with neither trip count nor condition never ends")
    init = [ctx.onnx_order(x) for x in node.inputs[2:2 + n_state]]
    invariants = [_invariant(t, _shapes(sub, [sub.inputs[2 + k], sub.outputs[1 + k]])) for k, t in enumerate(init)]
    limit = _scalar(ctx.onnx_order(trip), tf.int64) if trip else None
    go = _scalar(ctx.onnx_order(cond), tf.bool) if cond else tf.constant(True)
    with v1_control_flow():
        buffers = _scan_buffers(sub, sub.outputs[1 + n_state:])

        def test(i, go, *_):
            if limit is None:
                return go
            return tf.logical_and(i < limit, go) if cond else i < limit

        def step(i, go, *rest):
            feeds = dict(zip(sub.inputs, [i, go, *rest[:n_state]]))
            outs = _run(ctx, sub, feeds)
            index = tf.cast(i, tf.int32)
            written = [b.write(index, y) for b, y in zip(rest[n_state:], outs[1 + n_state:])]
            return (i + 1, _scalar(outs[0], tf.bool), *_pinned(outs[1:1 + n_state], invariants), *written)

        shapes = [tf.TensorShape([]), tf.TensorShape([]), *invariants, *[tf.TensorShape([])] * len(buffers)]
        try:
            res = tf.compat.v1.while_loop(test, step, [tf.constant(0, tf.int64), go, *init, *buffers],
                                          shape_invariants=shapes)
        except ValueError as e:  # a state whose rank changes between iterations
            raise Decline(f"loop state cannot be given one shape for all iterations: {e}") from e
        results = [*res[2:2 + n_state], *[_stack(b) for b in res[2 + n_state:]]]
    _set_results(ctx, node, results)


def _move_axis(t: tf.Tensor, src: int, dst: int) -> tf.Tensor:
    rank = t.shape.rank
    if src % rank == dst % rank:
        return t
    order = [a for a in range(rank) if a != src % rank]
    order.insert(dst % rank, src % rank)
    return tf.transpose(t, order)


@op("Scan", since=9)
def scan(ctx: EmitContext, node: Node) -> None:
    """A scan over a length known only at run time: a v1 `while_loop` taking slice t (or L-1-t for a reversed
    input) of every scan input along its axis, carrying the state, and writing each scan output at t (or L-1-t
    for a reversed output) of a TensorArray, stacked and moved to its output axis after the loop."""
    sub: Graph = node.attrs["body"]  # folded by passes/bodies.py
    m = node.attrs["num_scan_inputs"]
    n_state = len(sub.inputs) - m
    n_out = len(sub.outputs) - n_state
    in_axes = node.attrs.get("scan_input_axes") or [0] * m
    in_rev = node.attrs.get("scan_input_directions") or [0] * m
    out_axes = node.attrs.get("scan_output_axes") or [0] * n_out
    out_rev = node.attrs.get("scan_output_directions") or [0] * n_out
    init = [ctx.onnx_order(x) for x in node.inputs[:n_state]]
    xs = [ctx.onnx_order(x) for x in node.inputs[n_state:n_state + m]]
    if any(x.shape.rank is None for x in xs):
        raise Decline("a scan input of unknown rank")
    xs = [_move_axis(x, a, 0) for x, a in zip(xs, in_axes)]
    invariants = [_invariant(t, _shapes(sub, [sub.inputs[k], sub.outputs[k]])) for k, t in enumerate(init)]
    length = tf.shape(xs[0], out_type=tf.int32)[0]
    with v1_control_flow():
        buffers = _scan_buffers(sub, sub.outputs[n_state:])

        def step(t, *rest):
            last = length - 1 - t
            slices = [tf.gather(x, last if r else t) for x, r in zip(xs, in_rev)]
            outs = _run(ctx, sub, dict(zip(sub.inputs, [*rest[:n_state], *slices])))
            written = [b.write(last if r else t, y) for b, y, r in zip(rest[n_state:], outs[n_state:], out_rev)]
            return (t + 1, *_pinned(outs[:n_state], invariants), *written)

        shapes = [tf.TensorShape([]), *invariants, *[tf.TensorShape([])] * len(buffers)]
        try:
            res = tf.compat.v1.while_loop(lambda t, *_: t < length, step, [tf.constant(0), *init, *buffers],
                                          shape_invariants=shapes)
        except ValueError as e:
            raise Decline(f"scan state cannot be given one shape for all iterations: {e}") from e
        stacked = [_stack(b) for b in res[1 + n_state:]]
    _set_results(ctx, node, [*res[1:1 + n_state], *[_move_axis(s, 0, a) for s, a in zip(stacked, out_axes)]])
