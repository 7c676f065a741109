"""How many cores the model and the front end get: an explicit budget, because on few cores they compete.

TF sizes its intra-op pool to every core it sees, and the front end's thread comes on top of it; on 2 cores that
oversubscription slowed the model by up to 1.8x (docs/predict.md). The budget is chosen from the cores this process
may run on (os.sched_getaffinity, which honours taskset and cgroup cpusets, unlike os.cpu_count), and `--threads`
overrides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Threads:
    """`model`: TF's intra-op pool (inter-op is 1: predict's models are chains of ops, each big enough to use the
    whole pool); `frontend`: files decoded and turned into patches in parallel (one file never spans threads)."""

    model: int
    frontend: int = 1

    def __str__(self) -> str:
        return f"{self.model},{self.frontend}"


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_threads(cores: int | None = None) -> Threads:
    """The split used when `--threads` is not given.

    The model keeps every core: the front end costs about a tenth of the model's CPU and mostly waits on a full
    queue, so shrinking TF's pool to make room for it loses more than sharing a core with it (measured on 2 cores,
    docs/predict.md). One front-end thread per 8 cores keeps up with the model on a single file and decodes files in
    parallel when there are many.
    """
    n = cores or available_cores()
    return Threads(model=n, frontend=max(1, n // 8))
