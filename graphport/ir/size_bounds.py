"""The sizes a dynamic dim may take, read from the IR's symbolic shapes (what verification sizing starts from).

Why: a converter that verifies a raw-audio model at a length where some intermediate dim is 0 proves nothing (the
mean over an empty axis is NaN in both runtimes) and may crash a kernel (oneDNN cannot build an empty pooling
primitive). The graph itself says which lengths are meaningful: once folding has run, every intermediate dim is an
expression over the input dims (`((samples - 10)//5 - 3)//2 + 1`), and every conv or pool window must fit its
padded input. Each becomes a `Bound`, an expression that must be >= 1; `smallest` finds the least size of one dim at
which all the bounds that read only that dim (and the batch) hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from graphport.ir.graph import Dim, Graph, Node
from graphport.ir.symbolic import Atom, Sym, evaluate

WINDOWED = ("Conv", "MaxPool", "AveragePool", "LpPool")
LIMIT = 1 << 20  # a million samples (a minute of 16 kHz audio): past that a dim is not sized from the graph
_GRID = sorted({*range(1, 65), *(int(64 * 1.125**k) for k in range(1, 120) if 64 * 1.125**k <= LIMIT), LIMIT})


@dataclass(frozen=True)
class Bound:
    """`expr >= 1` must hold: an output dim of node `node` (`what` = "dim"), or the room its window has in its padded
    input plus one (`what` = "window")."""

    expr: Dim | Sym
    node: str
    op: str
    what: str
    symbols: frozenset[str]

    def holds(self, sizes: dict[str, int]) -> bool:
        value = evaluate(self.expr, sizes)
        return value is None or value >= 1

    def describe(self) -> str:
        part = "its window would not fit its padded input" if self.what == "window" else "an output dim would be < 1"
        return f"{self.op} '{self.node}': {part}"


def bounds(graph: Graph) -> list[Bound]:
    """Every symbolic output dim and every conv/pool window of `graph`, once per distinct expression."""
    found: dict[str, Bound] = {}
    for node in graph.nodes:
        for name in node.outputs:
            shape = graph.values[name].shape if name in graph.values else None
            for d in shape or ():
                _add(found, d, node, "dim")
        if node.op_type in WINDOWED:
            for room in _window_rooms(graph, node):
                _add(found, room, node, "window")
    return list(found.values())


def _add(found: dict[str, Bound], expr: Dim | Sym, node: Node, what: str) -> None:
    symbols = symbols_of(expr)
    key = f"{what}:{expr!r}"
    if symbols and key not in found:
        found[key] = Bound(expr, node.name or node.op_type, node.op_type, what, symbols)


def symbols_of(expr: object) -> frozenset[str]:
    """The input dims an expression reads."""
    if isinstance(expr, str):
        return frozenset([expr])
    if not isinstance(expr, Sym):
        return frozenset()
    return frozenset().union(*(_atom_symbols(a) for mono in expr.terms for a in mono))


def _atom_symbols(atom: Atom) -> frozenset[str]:
    return frozenset([atom.name]) if atom.op is None else symbols_of(atom.arg)


def _window_rooms(graph: Graph, node: Node) -> Iterable[Sym]:
    """`padded input - window span + 1` for each symbolic spatial dim of a conv or pool that is not SAME-padded."""
    a = node.attrs
    x = graph.values[node.inputs[0]].shape if node.inputs[0] in graph.values else None
    if x is None or len(x) < 3 or a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return []
    if node.op_type == "Conv":
        w = graph.values[node.inputs[1]].shape if node.inputs[1] in graph.values else None
        kernel = a.get("kernel_shape") or (w[2:] if w is not None else None)
    else:
        kernel = a.get("kernel_shape")
    if not kernel or not all(isinstance(k, int) for k in kernel):
        return []
    n = len(kernel)
    dilations, pads = a.get("dilations") or [1] * n, a.get("pads") or [0] * 2 * n
    if a.get("auto_pad") == "VALID":
        pads = [0] * 2 * n
    rooms = []
    for i, d in enumerate(x[2:]):
        if isinstance(d, str) and d in graph.symbols:
            d = graph.sym(d)
        if isinstance(d, Sym):
            rooms.append(d + pads[i] + pads[i + n] - (kernel[i] - 1) * dilations[i])
    return rooms


def strides(graph: Graph) -> list[int]:
    """The distinct strides > 1 of the graph's convs and pools (a second verification size avoids their multiples)."""
    found = {s for n in graph.nodes if n.op_type in (*WINDOWED, "ConvTranspose") for s in n.attrs.get("strides") or []}
    return sorted(s for s in found if isinstance(s, int) and s > 1)


def smallest(dim: str, all_bounds: list[Bound], fixed: dict[str, int], start: int = 1) -> tuple[int | None, Bound | None]:
    """The least size >= `start` of `dim` at which every bound that reads only `dim` and the dims in `fixed` holds,
    and the bound that rules out the size below it (None when nothing does); (None, the bound that still fails at
    LIMIT) when no size up to LIMIT works. A coarse grid first, then bisection below its first fit (the bounds
    grow with the dim: conv and pool arithmetic is monotone)."""
    own = [b for b in all_bounds if dim in b.symbols and b.symbols <= {dim, *fixed}]

    def failing(size: int) -> Bound | None:
        sizes = {**fixed, dim: size}
        return next((b for b in own if not b.holds(sizes)), None)

    low = start - 1  # the largest size known to fail (or below the start)
    for size in (g for g in _GRID if g >= start):
        if failing(size) is None:
            high = size
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (low, mid) if failing(mid) is None else (mid, high)
            return high, failing(high - 1) if high > start else None
        low = size
    return None, failing(LIMIT)
