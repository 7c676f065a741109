"""Price the old shape refiner's re-inference rounds: predicted constant-evaluation kernel runs and load time.

Model (TF <= 2.12 `shape_refiner.cc` / `eval_const_tensor.cc`, docs/background.md §1): a walk from a shape-consuming input
stops at the first function argument whose value is not yet known and requests it; the call node then re-infers
the whole body with that argument known. So a body needs `rounds = 1 + max(weight arguments on one walk)`
inferences, and one nesting level more (signature wrapper -> __call__) re-runs that loop once per outer round:
T(rounds) = rounds·(rounds+1)/2 inferences. Each inference re-runs every fully constant walk (no cache survives
function entry), e.g. Range→SplitV→Mean. On the seed B0 this gives 17 × T(163) = 227,222 runs of each of
SplitV/Sub/Pack/Range, the exact count in its load profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphport.doctor.analyze import Analysis

# Seconds per re-inferred constant-walk kernel, fitted on the mini fixture (117 s in Essentia, libtensorflow 2.5,
# 2-core machine): 117 s / (2,701 inferences × 514 kernels). Checked against the seed B0 in docs/doctor.md.
SECONDS_PER_KERNEL = 117.0 / (2701 * 514)
SLOW_S = 5.0


@dataclass
class Risk:
    """Predicted load behaviour for old and new TF, with the numbers behind it."""

    rounds: int  # body inferences per outer round
    inferences: int  # total body inferences
    kernels_per_inference: int
    kernel_runs: int
    chain_runs: dict[str, int]  # per hazardous constant chain: predicted runs of each of its ops
    old_seconds: float
    old_level: str
    old_reason: str
    new_level: str
    new_reason: str


def predict(a: Analysis) -> Risk:
    """Predict the old refiner's work for `a`, and the risk for old (<=2.12) and new (>=2.13) TF."""
    in_functions = [w for w in a.walks if w.body != "<graph>"]
    max_args = max((len(w.const_args) for w in in_functions), default=0)
    nested = max(a.functions.values(), default=0) >= 2
    rounds = 1 + max_args if in_functions else 0
    inferences = rounds * (rounds + 1) // 2 if nested else rounds
    # Branch bodies of If/While are not re-inferred by the call node's loop: only call bodies are priced.
    constant_walks = [w for w in in_functions if w.kernels and not w.const_args and not w.data_args
                      and w.body not in a.branches]
    per = sum(w.kernels for w in constant_walks)
    chains: dict[str, int] = {}
    for w in constant_walks:
        chains[w.chain] = chains.get(w.chain, 0) + inferences
    runs = inferences * per
    seconds = runs * SECONDS_PER_KERNEL
    if max_args:
        level = "high" if seconds >= SLOW_S else "medium"
        reason = (f"{max_args} weight arguments lie on one shape walk inside nested functions: {rounds} "
                  f"re-inference rounds{' per outer round' if nested else ''}, {inferences:,} body inferences, "
                  f"~{runs:,} constant-evaluation kernel runs")
    elif a.control_flow:
        level, reason = "medium", "tf.cond/While bodies are re-inferred on import"
    elif seconds >= SLOW_S / 50:
        level, reason = "medium", (f"constant shape subgraphs inside functions: ~{runs:,} constant-evaluation kernel "
                                   f"runs on import, ~{seconds:.1f} s")
    else:
        level, reason = "low", ("no weights as function arguments: walks stop at once, and constant subgraphs "
                                f"(if any) are evaluated {inferences or 0} time(s), ~{seconds:.2f} s")
    if max_args or a.control_flow:
        new_level, new_reason = "low", ("TF >= 2.13 caches constant evaluation across function bodies "
                                        "(about 1.5 s for the seed B0); still slower than a flat graph")
    else:
        new_level, new_reason = "low", "nothing for the shape refiner to re-run"
    return Risk(rounds, inferences, per, runs, chains, seconds, level, reason, new_level, new_reason)
