"""Seeded random inputs for a model description: the one feed generator behind verification, bench, profile and
the batch-size picker, so that every tool feeds the same values for the same (model, batch, seed)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from graphport.runtime.model_info import IOInfo

OTHER_DIM = 16  # size for unknown dims other than the leading batch (a time axis, say)


def seeded_feeds(inputs: Iterable[IOInfo], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal floats, 0/1 booleans, integers in [0, 10); an unknown leading dim is the batch."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) and d >= 0 else (batch if axis == 0 else OTHER_DIM)
                 for axis, d in enumerate(spec.shape or [None])]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds
