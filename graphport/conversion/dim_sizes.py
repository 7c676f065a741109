"""Sizes at which verification feeds the symbolic dims other than the batch (a time axis, a sequence length, an
image's height and width).

A dim that stays symbolic in the emitted graph must be proven at more than one size, or a graph that hard-codes the
size it was probed at would pass. Not every size is meaningful: below some length an intermediate dim is 0 (a mean
over it is NaN in both runtimes, a pool over it crashes oneDNN) or a window no longer fits. The graph says where
that is (graphport.ir.size_bounds): the first size is the smallest at which every dim is >= 1 and every window fits,
the second a larger one that no stride divides (so padding that depends on the remainder is exercised), a different
value per dim so that swapping two dims (height for width) cannot pass unnoticed. ONNX Runtime, the reference, must
run each with non-empty outputs; a size it refuses is no verdict on the converter, so the next size is tried
(windowed attention wants multiples of its window). Every choice keeps its reason, for the verification table and
model.json. `--verify-dim NAME=SIZE[,SIZE]` overrides the choice for a dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphport.core.errors import GraphportError
from graphport.ir.graph import Graph
from graphport.ir.size_bounds import LIMIT, Bound, bounds, smallest, strides
from graphport.runtime.feeds import batch_symbols, seeded_feeds
from graphport.runtime.model_info import IOInfo
from graphport.runtime.reference import reference_session

GROWTH = tuple(16 * 2**k for k in range(13))  # 16 ... 65536: covers mel frames, tokens and raw audio samples


def free_symbols(specs: list[IOInfo]) -> list[str]:
    """The symbolic dims of the inputs that are not the batch, in order of first appearance."""
    batch = batch_symbols(specs)
    seen: list[str] = []
    for spec in specs:
        for d in spec.shape or []:
            if isinstance(d, str) and d not in batch and d not in seen:
                seen.append(d)
    return seen


@dataclass
class DimPlan:
    """What verification feeds the free dims: size sets (the base first) with the reason for each size, and free
    dims that turned out to follow the batch (an unnamed batch dim on a recurrent state, `[2, ?, 128]`, which no name
    ties to the input's)."""

    sizes: list[dict[str, int]] = field(default_factory=list)
    batch_like: list[str] = field(default_factory=list)
    reasons: list[dict[str, str]] = field(default_factory=list)

    def dims(self, variant: int, batch: int) -> dict[str, int]:
        """Sizes for size set `variant` at `batch`."""
        return {**(self.sizes[variant] if self.sizes else {}), **dict.fromkeys(self.batch_like, batch)}


def plan_sizes(onnx_bytes: bytes, graph: Graph, specs: list[IOInfo],
               overrides: dict[str, tuple[int, ...]] | None = None) -> DimPlan:
    """Sizes to verify at: none without free dims, else the base set first, then (when ORT accepts one) a second
    set in which every free dim has another size. `graph` is the folded IR, whose shapes are symbolic. Raises
    GraphportError naming the dim when the graph bounds it at no size, or ORT runs the model at none."""
    overrides = dict(overrides or {})
    free = free_symbols(specs)
    unknown = sorted(set(overrides) - set(free))
    if unknown:
        raise GraphportError(f"--verify-dim names {', '.join(map(repr, unknown))}, which is not a symbolic dim of "
                             f"the model's inputs other than the batch; those are: {', '.join(map(repr, free)) or 'none'}.")
    if not free:
        return DimPlan()
    probe = _Probe(reference_session(onnx_bytes), specs, bounds(graph), batch_symbols(specs))
    refusal = ""
    for batch_like in [[]] + [[d] for d in free if d not in overrides]:
        rest = [d for d in free if d not in batch_like]
        floor, reasons = probe.graph_minimum(rest, overrides, batch_like)
        for sizes in _growing(floor, overrides):
            # at batch 2 too: a dim that ORT wants equal to the batch runs at batch 1 when it is 1 (a state's batch)
            refusal = probe.refusal(sizes, batch_like) or probe.refusal(sizes, batch_like, 2)
            if not refusal:
                break
            if sizes is floor:
                first_refusal = refusal
        if not refusal:
            break
    else:
        raise GraphportError(f"ONNX Runtime runs this model at none of the sizes tried for its dims "
                             f"{', '.join(map(repr, free))} (from the smallest the graph allows up to {GROWTH[-1]}, "
                             f"with a batch of 1; {refusal}); name sizes it accepts with --verify-dim NAME=SIZE.")
    if sizes is not floor:
        reasons = {d: r if sizes[d] == floor[d] else f"the graph allows {floor[d]} and up, but {first_refusal}; "
                   f"{sizes[d]} is the first size tried that it runs" for d, r in reasons.items()}
    plan = DimPlan([sizes] if rest else [], batch_like, [reasons] if rest else [])
    if rest:
        second = probe.second_sizes(sizes, overrides, strides(graph), batch_like)
        if second is not None:
            plan.sizes.append(second[0])
            plan.reasons.append(second[1])
    return plan


def _growing(floor: dict[str, int], overrides: dict[str, tuple[int, ...]]):
    """The graph's smallest sizes, then every dim not chosen by the user grown to each of GROWTH (at least its
    smallest), as a windowed model that wants multiples of its window needs."""
    yield floor
    seen = [floor]
    for g in GROWTH:
        sizes = {d: v if d in overrides else max(v, g) for d, v in floor.items()}
        if sizes not in seen:
            seen.append(sizes)
            yield sizes


@dataclass
class _Probe:
    """The model's bounds and ORT's answers, for one plan."""

    sess: object
    specs: list[IOInfo]
    bounds: list[Bound]
    batch: set[str]

    def refusal(self, sizes: dict[str, int], batch_like: list[str], batch: int = 1) -> str:
        """Why ORT's outputs at `sizes` are no reference ('' when it runs them with non-empty outputs)."""
        try:
            outs = self.sess.run(None, seeded_feeds(self.specs, batch, 0, {**sizes,
                                                                           **dict.fromkeys(batch_like, batch)}))
        except Exception as e:  # noqa: BLE001  ORT's refusal is the answer: this size is not valid for the model
            first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            return f"ONNX Runtime refuses {_spell(sizes)}{f' at batch {batch}' if batch > 1 else ''} ({first[:200]})"
        empty = [i for i, o in enumerate(outs) if np.asarray(o).size == 0]
        return f"ONNX Runtime returns an empty output at {_spell(sizes)}" if empty else ""

    def graph_minimum(self, dims: list[str], overrides: dict[str, tuple[int, ...]], batch_like: list[str]
                      ) -> tuple[dict[str, int], dict[str, str]]:
        """The smallest size of each dim the graph allows, with the reason; raises GraphportError for a dim the graph
        bounds at no size."""
        ones = dict.fromkeys([*self.batch, *batch_like], 1)
        sizes, reasons = {}, {}
        for d in dims:
            if d in overrides:
                sizes[d], reasons[d] = overrides[d][0], "chosen with --verify-dim"
                continue
            size, binding = smallest(d, self.bounds, ones)
            if size is None:
                raise GraphportError(f"the dim '{d}' cannot be sized from the graph: at every size up to {LIMIT}, "
                                     f"{binding.describe() if binding else 'a dim stays below 1'}; name the sizes to "
                                     f"verify at with --verify-dim {d}=SIZE[,SIZE].")
            sizes[d] = size
            reasons[d] = (f"the smallest size at which every dim is >= 1 and every window fits (at {size - 1}, "
                          f"{binding.describe()})" if binding else "no dim or window of the graph bounds it below")
        joint = [b for b in self.bounds if b.symbols <= {*dims, *ones}]
        while not all(b.holds({**ones, **sizes}) for b in joint):  # bounds over several dims (height * width)
            sizes = {d: v if d in overrides else v * 2 for d, v in sizes.items()}
            reasons = {d: r if d in overrides else f"twice until the dims' joint bounds hold: {r}"
                       for d, r in reasons.items()}
            if max(sizes.values()) > LIMIT:
                raise GraphportError(f"the dims {', '.join(map(repr, dims))} cannot be sized together from the graph; "
                                     f"name the sizes to verify at with --verify-dim NAME=SIZE[,SIZE].")
        return sizes, reasons

    def second_sizes(self, base: dict[str, int], overrides: dict[str, tuple[int, ...]], steps: list[int],
                     batch_like: list[str]) -> tuple[dict[str, int], dict[str, str]] | None:
        """A larger size per dim that no stride divides, each unlike every other dim's; else (ORT refusing that)
        a different multiple of the base per dim; None when ORT runs neither."""
        used, sizes, reasons = set(base.values()), {}, {}
        for d, v in base.items():
            if d in overrides:
                sizes[d], reasons[d] = overrides[d][-1], "chosen with --verify-dim"
                continue
            size = 2 * v + 1
            while size in used or any(size % s == 0 for s in steps):
                size += 1
            used.add(size)
            sizes[d] = size
            reasons[d] = (f"larger than {v} and a multiple of none of the strides {', '.join(map(str, steps))}"
                          if steps else f"larger than {v}, and unlike the other dims' sizes")
        if sizes == base:
            return None
        refusal = self.refusal(sizes, batch_like)
        if not refusal:
            return sizes, reasons
        for factors in ([i + 2 for i in range(len(base))], [2] * len(base)):
            other = {d: overrides[d][-1] if d in overrides else v * f for (d, v), f in zip(base.items(), factors)}
            if other != base and not self.refusal(other, batch_like):
                return other, {d: reasons[d] if d in overrides else f"{refusal}; {other[d]} is {f} times the first "
                               "size" for (d, _), f in zip(base.items(), factors)}
        return None


def _spell(sizes: dict[str, int]) -> str:
    return ", ".join(f"{d}={v}" for d, v in sizes.items())
