"""Sizes at which verification feeds the symbolic dims other than the batch (a time axis, a sequence length, an
image's height and width).

A dim that stays symbolic in the emitted graph must be proven at more than one size, or a graph that hard-codes the
size it was probed at would pass. Not every size is valid: a raw-audio encoder whose first kernel spans 400 samples
has no output below that ("Computed output size would be negative" in TF), windowed attention wants multiples of the
window. So the sizes are found by asking ONNX Runtime, the reference: grow all the dims together from 16 until the
model runs at batch 1 with non-empty outputs (the base sizes), then look for a second set of sizes, a different
multiple of the base per dim so that swapping two dims (height for width) cannot pass unnoticed.
`--verify-dim NAME=SIZE[,SIZE]` overrides the choice for a dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphport.errors import GraphportError
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
    """What verification feeds the free dims: size sets (the base first), and free dims that turned out to follow
    the batch (an unnamed batch dim on a recurrent state, `[2, ?, 128]`, which no name ties to the input's)."""

    sizes: list[dict[str, int]] = field(default_factory=list)
    batch_like: list[str] = field(default_factory=list)

    def dims(self, variant: int, batch: int) -> dict[str, int]:
        """Sizes for size set `variant` at `batch`."""
        return {**(self.sizes[variant] if self.sizes else {}), **dict.fromkeys(self.batch_like, batch)}


def plan_sizes(onnx_bytes: bytes, specs: list[IOInfo], overrides: dict[str, tuple[int, ...]] | None = None
               ) -> DimPlan:
    """Sizes to verify at: none without free dims, else the base set first, then (when ORT accepts one) a second
    set in which every free dim has another size. Raises GraphportError if ORT runs the model at no size."""
    overrides = dict(overrides or {})
    free = free_symbols(specs)
    unknown = sorted(set(overrides) - set(free))
    if unknown:
        raise GraphportError(f"--verify-dim names {', '.join(map(repr, unknown))}, which is not a symbolic dim of "
                             f"the model's inputs other than the batch; those are: {', '.join(map(repr, free)) or 'none'}.")
    if not free:
        return DimPlan()
    sess = reference_session(onnx_bytes)

    def runs(sizes: dict[str, int], batch: int = 1) -> bool:
        try:
            outs = sess.run(None, seeded_feeds(specs, batch, 0, sizes))
        except Exception:  # noqa: BLE001  ORT's refusal is the answer: this size is not valid for the model
            return False
        return all(np.asarray(o).size > 0 for o in outs)

    fixed = {k: v[0] for k, v in overrides.items()}
    for batch_like in [[]] + [[d] for d in free if d not in overrides]:
        rest = [d for d in free if d not in batch_like]
        base = next((s for s in ({**dict.fromkeys(rest, g), **fixed} for g in GROWTH[:len(GROWTH) if rest else 1])
                     if runs({**s, **dict.fromkeys(batch_like, 1)})), None)
        if base is not None and (not batch_like or runs({**base, **dict.fromkeys(batch_like, 2)}, batch=2)):
            break
    else:
        raise GraphportError(f"ONNX Runtime runs this model at none of the sizes tried for its dims "
                             f"{', '.join(map(repr, free))} ({GROWTH[0]} to {GROWTH[-1]}, with a batch of 1); name "
                             f"sizes it accepts with --verify-dim NAME=SIZE.")
    plan = DimPlan([base] if rest else [], batch_like)
    pinned = {k: v[-1] for k, v in overrides.items()}  # a dim given one size keeps it; given two, takes the second
    for factors in ([i + 2 for i in range(len(rest))], [2] * len(rest)):
        other = {**{k: base[k] * f for k, f in zip(rest, factors)}, **pinned}
        if rest and other != base and runs({**other, **dict.fromkeys(batch_like, 1)}):
            plan.sizes.append(other)
            break
    return plan
