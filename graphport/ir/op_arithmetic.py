"""Arithmetic of ONNX ops that both a pass and an emitter need: it lives in `ir`, below both, so that code
generation never imports a pass."""

from __future__ import annotations

import numpy as np


def batchnorm_affine(scale: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                     epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as `x * factor + shift` per channel, in float64: the one place this arithmetic lives,
    for the Conv fold (passes/fuse.py) and for the standalone BatchNorm emitter (emit/tf/norm.py)."""
    scale, beta, mean, var = (np.asarray(p, np.float64) for p in (scale, beta, mean, var))
    factor = scale / np.sqrt(var + epsilon)
    return factor, beta - mean * factor
