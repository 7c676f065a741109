"""Sink Transposes through elementwise ops, Mean and Pad until they meet their inverse and cancel.

onnx-tf wraps every NHWC conv in NCHW<->NHWC Transposes and runs the activations, pools and residual adds in
NCHW between them (docs/background.md §1). Grappler only cancels Transposes that are directly adjacent, so this pass moves
each Transpose below the ops that do not care about layout (permuting their constant operands, axes and
paddings), where it meets the next conv's inverse Transpose.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

from graphport.doctor.analyze import producer

UNARY = {"Sigmoid", "Relu", "Relu6", "Tanh", "Elu", "Selu", "Softplus", "Exp", "Log", "Neg", "Abs", "Sqrt",
         "Rsqrt", "Square", "Erf", "Floor", "Ceil", "Round", "Sign", "Reciprocal", "Cast"}
BINARY = {"Mul", "AddV2", "Add", "Sub", "RealDiv", "Maximum", "Minimum", "Pow", "SquaredDifference"}


def _const(nodes: dict[str, node_def_pb2.NodeDef], inp: str) -> np.ndarray | None:
    n = nodes.get(producer(inp))
    return tf.make_ndarray(n.attr["value"].tensor) if n is not None and n.op == "Const" and ":" not in inp else None


def _perm(nodes: dict[str, node_def_pb2.NodeDef], inp: str) -> tuple[int, ...] | None:
    """The permutation of the Transpose producing `inp`, or None."""
    n = nodes.get(producer(inp))
    if n is None or n.op != "Transpose" or ":" in inp:
        return None
    p = _const(nodes, n.input[1])
    return None if p is None else tuple(int(v) for v in p)


def _const_node(gd: graph_pb2.GraphDef, nodes: dict[str, node_def_pb2.NodeDef], name: str,
                value: np.ndarray) -> str:
    c = gd.node.add(name=name, op="Const")
    nodes[name] = c
    c.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return name


def _sink_one(gd: graph_pb2.GraphDef, nodes: dict[str, node_def_pb2.NodeDef], e: node_def_pb2.NodeDef) -> bool:
    """Rewrite e(T(x, p), ...) as T(e'(x, ...), p) in place; False where the op or operands do not allow it."""
    data = [i for i in e.input if not i.startswith("^")]
    if e.op in UNARY | BINARY:
        operands = data
    elif e.op == "Mean" and e.attr["keep_dims"].b or e.op in ("Pad", "PadV2", "MirrorPad"):
        operands = data[:1]
    else:
        return False
    perms = {_perm(nodes, i) for i in operands if _perm(nodes, i) is not None}
    if len(perms) != 1:
        return False
    p = perms.pop()
    inv = np.argsort(p)
    new_inputs = []
    for k, inp in enumerate(data):
        if k < len(operands) and _perm(nodes, inp) == p:
            new_inputs.append(nodes[producer(inp)].input[0])
            continue
        c = _const(nodes, inp)
        if c is None:
            return False
        if k == 2:
            new_inputs.append(inp)  # PadV2's constant value: layout-free
            continue
        if k >= len(operands):  # Mean axes / Pad paddings, in the transposed layout
            c = np.asarray(p)[c.astype(np.int64) % len(p)].astype(c.dtype) if e.op == "Mean" else c[inv]
        elif c.ndim:
            if c.ndim > len(p):
                return False
            c = np.transpose(c.reshape((1,) * (len(p) - c.ndim) + c.shape), inv)
        new_inputs.append(_const_node(gd, nodes, f"{e.name}/sunk_operand_{k}", c))
    inner = gd.node.add()
    inner.CopyFrom(e)
    inner.name = f"{e.name}/sunk"
    del inner.input[:]
    inner.input.extend(new_inputs + [i for i in e.input if i.startswith("^")])
    dtype = e.attr["T"].type if e.op != "Cast" else e.attr["DstT"].type
    e.op = "Transpose"
    e.ClearField("attr")
    del e.input[:]
    e.input.extend([inner.name, _const_node(gd, nodes, f"{e.name}/sunk_perm", np.asarray(p, np.int32))])
    e.attr["T"].type = dtype
    e.attr["Tperm"].type = tf.int32.as_datatype_enum
    nodes[inner.name] = inner
    return True


def _cancel(nodes: dict[str, node_def_pb2.NodeDef]) -> int:
    """Turn Transpose(Transpose(x, p1), p2) with p1∘p2 = identity into Identity(x)."""
    n_cancelled = 0
    for n in nodes.values():
        if n.op != "Transpose":
            continue
        p2, p1 = _const(nodes, n.input[1]), _perm(nodes, n.input[0])
        if p2 is not None and p1 is not None and list(np.asarray(p1)[p2]) == list(range(len(p1))):
            x = nodes[producer(n.input[0])].input[0]
            dtype = n.attr["T"].type
            n.op = "Identity"
            n.ClearField("attr")
            del n.input[:]
            n.input.append(x)
            n.attr["T"].type = dtype
            n_cancelled += 1
    return n_cancelled


def sink_transposes(gd: graph_pb2.GraphDef) -> tuple[graph_pb2.GraphDef, int]:
    """Sink and cancel Transposes; return the new graph and how many Transpose pairs cancelled."""
    out = graph_pb2.GraphDef()
    out.CopyFrom(gd)
    nodes = {n.name: n for n in out.node}
    changed, cancelled = True, 0
    while changed:
        changed = False
        for e in list(nodes.values()):
            if e.op != "Transpose" and _sink_one(out, nodes, e):
                changed = True
        n = _cancel(nodes)
        cancelled += n
        changed = changed or n > 0
    return out, cancelled
