"""Emission state: ONNX value name -> TF tensor plus its layout.

Layout is assigned lazily. Each tensor carries `perm` (TF axis i holds ONNX axis perm[i]; None is the ONNX order).
Convs and pools want channels last, elementwise ops follow their input, Transpose only relabels, and the ONNX
order is restored only where memory order matters. A restore whose moved axes are all size 1 is a Reshape.
This is how transposes sink and cancel without a separate pass.
"""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from graphport.emit.tf.decline import Decline
from graphport.ir.graph import Graph, Node
from graphport.ir.symbolic import Atom, Sym, is_symbolic

Perm = tuple[int, ...] | None


def tf_name(name: str) -> str:
    """A valid TF op name for an ONNX name ('onnx::Conv_12' -> 'onnx__Conv_12', '/a/b' -> 'a/b')."""
    clean = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name).strip("/")
    clean = re.sub(r"/+", "/", clean)
    return clean if clean and re.match(r"[A-Za-z0-9.]", clean[0]) else f"v{clean}"


def channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def opt_input(node: Node, k: int) -> str:
    """Optional input `k` of `node`: its name, or "" when absent (ONNX allows trailing inputs to be left out)."""
    return node.inputs[k] if len(node.inputs) > k else ""


class EmitContext:
    def __init__(self, graph: Graph, reserved: set[str]):
        self.graph = graph
        self.reserved = reserved
        self.tensors: dict[str, tf.Tensor] = {}
        self.perms: dict[str, Perm] = {}
        self._dims: dict[str, tf.Tensor] = {}
        self._shapes: dict[str, tf.Tensor] = {}

    def child(self, graph: Graph) -> EmitContext:
        """A context for a subgraph (an If branch, a Loop or Scan body) over `graph`: it sees every value emitted so
        far, and what it emits, cached shape reads included, stays its own, as TF's control-flow contexts require."""
        sub = EmitContext(graph, self.reserved)
        sub.tensors, sub.perms = dict(self.tensors), dict(self.perms)
        sub._dims, sub._shapes = dict(self._dims), dict(self._shapes)
        return sub

    # ---- values -------------------------------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The conversion-time value of `name` (None for a runtime tensor or an absent optional input)."""
        return self.graph.const(name)

    def static(self, name: str) -> np.ndarray:
        """A constant that the op needs at conversion time; Decline otherwise."""
        arr = self.const(name)
        if arr is None or arr.dtype == object:
            raise Decline(f"input '{name}' must be a constant known at conversion time")
        return arr

    def perm(self, name: str) -> Perm:
        return self.perms.get(name)

    def set(self, name: str, tensor: tf.Tensor, perm: Perm = None) -> None:
        if perm is not None and perm == tuple(range(len(perm))):
            perm = None
        self.tensors[name], self.perms[name] = tensor, perm

    def raw(self, name: str) -> tf.Tensor:
        """The tensor as stored, in whatever layout `perm(name)` says."""
        if name not in self.tensors:
            arr = self.const(name)
            if arr is None:
                raise KeyError(name)
            if arr.dtype == object:  # shape arithmetic; a Cast to float keeps the `Sym`s but not their type
                t = self.materialize(arr, tf_name(name))
                dtype = self.graph.values[name].dtype if name in self.graph.values else None
                self.tensors[name] = tf.cast(t, dtype) if dtype is not None and dtype != np.int64 else t
            else:
                self.tensors[name] = tf.constant(arr, name=self.op_name(name))
            self.perms[name] = None
        return self.tensors[name]

    def rank(self, name: str) -> int:
        arr = self.const(name)
        if arr is not None and name not in self.tensors:
            return arr.ndim
        return self.raw(name).shape.rank

    def onnx_order(self, name: str) -> tf.Tensor:
        return self.in_perm(name, None)

    def channels_last(self, name: str) -> tf.Tensor:
        return self.in_perm(name, channels_last(self.rank(name)))

    def in_perm(self, name: str, target: Perm) -> tf.Tensor:
        """`name` laid out as `target`; constants are permuted now, runtime tensors by Transpose or Reshape."""
        arr = self.const(name)
        rank = self.rank(name)
        src = self.perm(name) or tuple(range(rank))
        dst = target or tuple(range(rank))
        if src == dst:
            return self.raw(name)
        order = [src.index(a) for a in dst]
        if arr is not None and arr.dtype != object:
            key = f"{name}@{dst}"
            if key not in self.tensors:
                self.tensors[key] = tf.constant(np.transpose(arr, order), name=self.op_name(name))
            return self.tensors[key]
        return _transpose(self.raw(name), order)

    def shape_ints(self, name: str) -> list[int | None]:
        """Static shape in ONNX axis order (None for dims unknown until run time)."""
        shape = self.raw(name).shape.as_list()
        p = self.perm(name)
        if p is None:
            return shape
        out: list[int | None] = [None] * len(shape)
        for tf_axis, onnx_axis in enumerate(p):
            out[onnx_axis] = shape[tf_axis]
        return out

    def op_name(self, name: str) -> str:
        n = tf_name(name)
        return f"{n}_value" if n in self.reserved else n

    # ---- symbolic shapes ----------------------------------------------------------------------------------------
    def materialize(self, arr: np.ndarray, name: str = "shape") -> tf.Tensor:
        """Build a partially symbolic int vector at run time from one `Shape` per graph input."""
        if not is_symbolic(arr):
            return tf.constant(np.asarray(arr.tolist(), dtype=np.int64))
        parts = [self.sym_value(v) if isinstance(v, Sym) else tf.constant(int(v), tf.int64) for v in arr.flat]
        return tf.reshape(tf.stack(parts), list(arr.shape), name=self.op_name(name))

    def sym_value(self, s: Sym) -> tf.Tensor:
        total = None
        for mono, coef in s.terms.items():
            term = tf.constant(coef, tf.int64)
            for atom in mono:
                term = term * self._atom(atom)
            total = term if total is None else total + term
        return total

    def _atom(self, atom: Atom) -> tf.Tensor:
        if atom.name not in self._dims:
            if atom.source is not None:
                if atom.source not in self._shapes:
                    self._shapes[atom.source] = tf.shape(self.onnx_order(atom.source), out_type=tf.int64)
                self._dims[atom.name] = self._shapes[atom.source][atom.axis]
            else:
                arg = self.sym_value(atom.arg)
                self._dims[atom.name] = arg // atom.k if atom.op == "floordiv" else arg % atom.k
        return self._dims[atom.name]


def _transpose(t: tf.Tensor, order: list[int]) -> tf.Tensor:
    """Transpose, or a Reshape when only size-1 axes move (free at run time, e.g. C=1 or after a global pool)."""
    shape = t.shape.as_list()
    moved = [i for i in order if shape[i] != 1]
    kept = [i for i in range(len(shape)) if shape[i] != 1]
    target = [shape[i] for i in order]
    if moved == kept and sum(d is None for d in target) <= 1:
        return tf.reshape(t, [-1 if d is None else d for d in target])
    return tf.transpose(t, order)
