"""Seeded random inputs for a model description: the one feed generator behind verification, bench, profile and
the batch-size picker, so that every tool feeds the same values for the same (model, batch, seed)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from graphport.runtime.model_info import IOInfo, ModelInfo

OTHER_DIM = 16  # size for unknown dims other than the batch (a time axis, say) when the caller names none


def seeded_feeds(inputs: Iterable[IOInfo], batch: int, seed: int = 0,
                 dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Standard-normal floats, 0/1 booleans, integers in [0, 10).

    An unknown leading dim is the batch, and so is any dim named like one (a recurrent state `[2, batch, 128]`);
    `dims` sizes other named dims (`{"samples": 16000}`)."""
    inputs = list(inputs)
    rng = np.random.default_rng(seed)
    sizes = {**dict.fromkeys(batch_symbols(inputs), batch), **(dims or {})}
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d >= 0 else sizes.get(d, batch if axis == 0 else OTHER_DIM)
                 for axis, d in enumerate(spec.shape if spec.shape is not None else [None])]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def batch_symbols(inputs: Iterable[IOInfo]) -> set[str]:
    """Names of the dims that lead some input: the batch, wherever else they appear."""
    return {spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], str)}


def feeds_for(info: ModelInfo, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`seeded_feeds` for a model, refusing a batch size that a fixed-batch model (no input with a dynamic leading
    dim) rules out. Inputs with fixed dims beside a batched one (a mask, a table) are fed at their own size; other
    named dims at the first sizes the conversion verified (a wav2vec2's `samples` of 16 is too short for its convs)."""
    inputs = list(info.inputs)
    leading = [spec.shape[0] if spec.shape else None for spec in inputs]
    if not any(d is None or isinstance(d, str) or d < 0 for d in leading):
        fixed = next(((spec, d) for spec, d in zip(inputs, leading) if d != batch), None)
        if fixed is not None:
            raise ValueError(f"input '{fixed[0].name}' has a fixed batch of {fixed[1]}")
    return seeded_feeds(inputs, batch, seed, info.dim_sizes)
