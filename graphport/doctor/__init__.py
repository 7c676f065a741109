"""`graphport doctor`: why a TF model loads slowly in old TF hosts (Essentia, C API), and a verified flat fix."""

from __future__ import annotations

import os

from graphport.doctor.analyze import Analysis, analyze
from graphport.doctor.risk import Risk, predict
from graphport.runtime.tf_model import LoadedModel, load

__all__ = ["diagnose", "doctor_flags", "fix", "load"]


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


def fix(path: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False, tag: str | None = None,
        signature: str | None = None, trust: bool = False):
    """Repair the TF model at `path` into a flat graphport output folder at `out_dir` (model.pb, saved_model/,
    model.json), verified against the original at batch 1, 3 and 64; returns the `FixResult`.

    Models with file, network or code ops are refused unless `trust` (freezing runs the model's functions).
    """
    from graphport.doctor.fix import flatten, write
    from graphport.runtime.tf_model import untrusted_ops
    from graphport.runtime.trust import refuse_untrusted

    model = load(path, tag=tag, signature=signature)
    if not trust:
        refuse_untrusted(untrusted_ops(model))
    result = flatten(model)
    write(result, out_dir, force=force)
    return result
