"""`graphport doctor`: why a TF model loads slowly in old TF hosts (Essentia, C API), and a verified flat fix."""

from __future__ import annotations

import os

from graphport.doctor.analyze import Analysis, analyze
from graphport.doctor.load import LoadedModel, load
from graphport.doctor.risk import Risk, predict

__all__ = ["diagnose", "doctor_flags"]


def diagnose(model: LoadedModel) -> tuple[Analysis, Risk]:
    """Static analysis plus the old-refiner cost prediction; nothing is executed."""
    a = analyze(model)
    return a, predict(a)


def doctor_flags(path: str | os.PathLike) -> list[str]:
    """Hazards in the model at `path`, one line each; empty means it should load at once everywhere.

    `convert` uses this as a gate on its own output.
    """
    a, risk = diagnose(load(path))
    # Chains matter through re-inference: weights as arguments, or constant walks re-run enough to cost time.
    # Functions with Const weights evaluate their few constant walks once (graphport's SavedModel of ResNeSt- and
    # Swin-style exports: 0.08-0.3 s in Essentia's libtensorflow 2.5, docs/doctor.md), so they are not flagged.
    costly = risk.old_level != "low" or a.weight_args > 0
    flags = [f"{chain} in {n} place(s) inside functions" for chain, n in a.chains().most_common() if costly]
    if a.control_flow:
        flags.append(f"{len(a.control_flow)} control-flow ops ({', '.join(sorted({c[2] for c in a.control_flow}))})")
    if a.weight_args:
        flags.append(f"{a.weight_args} weights passed as function arguments")
    if a.variables:
        flags.append(f"{len(a.variables)} variables that could be constants")
    if risk.old_level != "low":
        flags.append(f"old-TF load risk {risk.old_level}: {risk.old_reason}")
    return flags
