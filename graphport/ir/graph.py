"""graphport's IR: a flat list of ONNX-semantics nodes over named values (in the spirit of torch.fx's Graph/Node).

Values carry a dtype and a shape made of ints and symbol names; constants are numpy arrays (object arrays with
`Sym` entries for partially known shape vectors). Passes are plain functions from a Graph to a `PassResult`
(the graph and whether the pass changed it); `Graph.lint()` checks the wiring after each (as torch.fx's does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphport.ir.symbolic import Atom, Sym

Dim = int | str | None  # int: known; str: a named symbol; None: unknown


@dataclass
class Value:
    name: str
    dtype: np.dtype | None = None
    shape: tuple[Dim, ...] | None = None
    const: np.ndarray | None = None


@dataclass
class Node:
    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    implicit_inputs: list[str] = field(default_factory=list)  # outer values an If/Loop/Scan body reads

    def all_inputs(self) -> list[str]:
        """Explicit inputs, then the outer values its subgraphs read (what dead-code and fusion passes must see)."""
        return self.inputs + self.implicit_inputs

    def bodies(self) -> list[Graph]:
        """Its subgraphs (an If's branches, a Loop's or Scan's body), in attribute order."""
        found: list[Graph] = []
        for a in self.attrs.values():
            if isinstance(a, Graph):
                found.append(a)
            elif isinstance(a, list):
                found.extend(g for g in a if isinstance(g, Graph))
        return found


class LintError(Exception):
    """The graph is not well formed: a pass broke it (graphport's bug, never the model's)."""


@dataclass
class Graph:
    nodes: list[Node]
    values: dict[str, Value]
    inputs: list[str]
    outputs: list[str]
    opset: int
    symbols: dict[str, tuple[str, int]] = field(default_factory=dict)  # symbol -> (graph input, axis)
    domain_opsets: dict[str, int] = field(default_factory=dict)  # custom domain -> its opset version
    notes: list[str] = field(default_factory=list)  # what conversion wants the user to know (warnings)

    def opset_of(self, node: Node) -> int:
        """The opset version the model imports for the node's domain."""
        return self.domain_opsets.get(node.domain, self.opset) if node.domain else self.opset

    def value(self, name: str) -> Value:
        if name not in self.values:
            self.values[name] = Value(name)
        return self.values[name]

    def sym(self, symbol: str) -> Sym:
        """Named input dimension `symbol` as a `Sym` atom that knows where to read it at run time."""
        src, axis = self.symbols[symbol]
        return Sym.atom(Atom(symbol, source=src, axis=axis))

    def sym_atoms(self) -> dict[str, Sym]:
        """Every named input dimension as its `Sym` (what `Shape` of a value folds to)."""
        return {s: self.sym(s) for s in self.symbols}

    def const(self, name: str) -> np.ndarray | None:
        """The constant behind `name`, or None for a runtime value or a missing optional input ('')."""
        v = self.values.get(name) if name else None
        return None if v is None else v.const

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.all_inputs():
                users.setdefault(i, []).append(n)
        return users

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def single_use_chain(self, last: Node, op_types: tuple[str, ...], users: dict[str, list[Node]],
                         producers: dict[str, Node]) -> list[Node] | None:
        """The nodes of `op_types`, in that order, each feeding the next through its first output and the last of
        them feeding `last`'s first input, each output used there only and none a graph output (what a pattern
        rewrite may remove), with a known shape on the chain's input and every output, `last`'s included; None when
        `last` is not fed by such a chain."""
        chain, name = [], last.inputs[0] if last.inputs else ""
        for op_type in reversed(op_types):
            node = producers.get(name)
            if (node is None or node.op_type != op_type or len(users.get(node.outputs[0], [])) != 1
                    or node.outputs[0] in self.outputs):
                return None
            chain.insert(0, node)
            name = node.inputs[0] if node.inputs else ""
        names = (name, *(n.outputs[0] for n in chain), last.outputs[0])
        return chain if all(n in self.values and self.values[n].shape is not None for n in names) else None

    def lint(self) -> None:
        """Raise LintError unless every node reads only values defined before it (graph inputs, constants, earlier
        outputs; an If/Loop/Scan also the outer values its bodies read), every value is made once, and every graph
        output is defined."""
        defined = set(self.inputs) | {k for k, v in self.values.items() if v.const is not None}
        for node in self.nodes:
            missing = [i for i in node.all_inputs() if i and i not in defined]
            if missing:
                raise LintError(f"node '{node.name}' ({node.op_type}) reads {missing} before anything defines it")
            twice = [o for o in node.outputs if o and o in defined]
            if twice:
                raise LintError(f"node '{node.name}' ({node.op_type}) makes {twice}, which is defined already")
            defined.update(o for o in node.outputs if o)
        undefined = [o for o in self.outputs if o not in defined]
        if undefined:
            raise LintError(f"graph outputs {undefined} are never defined")

    def census(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def agreed_dims(dims: list[Dim], shapes: list[tuple[Dim, ...] | None]) -> list[Dim]:
    """`dims` kept where every shape has the same int there, unknown elsewhere; a shape of unknown or another rank
    agrees on nothing. A loop state's shape over all iterations is its initial shape agreed with the body's
    declared input and output (passes/bodies.py on IR shapes, emit/tf/control_flow.py on TF's)."""
    for shape in shapes:
        if shape is None or len(shape) != len(dims):
            shape = (None,) * len(dims)
        dims = [d if isinstance(s, int) and s == d else None for d, s in zip(dims, shape)]
    return dims


def canonical(graph: Graph, d: object) -> Dim:
    """A dim as stored: an int, a symbol's name for a bare input dim, a `Sym`, or None."""
    if isinstance(d, Sym):
        d = d.simplify()
        if isinstance(d, Sym) and len(d.terms) == 1:
            (mono, coef), = d.terms.items()
            if coef == 1 and len(mono) == 1 and mono[0].name in graph.symbols:
                return mono[0].name
        return d
    if isinstance(d, (int, np.integer)):
        return int(d)
    return d if isinstance(d, str) and d in graph.symbols else None


@dataclass
class PassResult:
    """What a pass returns (torch.fx's PassResult): the graph, and whether the pass changed it."""

    graph: Graph
    modified: bool
