"""Pick the batch size from memory and throughput, by probing the loaded session.

Probes double the batch from 1 while the peak memory stays inside the budget (process RSS on CPU, reset before each
probe through /proc/self/clear_refs), and refine between the last fitting and the first failing size. Where
throughput stops growing (less than `knee_gain` per doubling) the probe stops at the knee: larger batches only cost
memory. An out-of-memory error halves the step instead of crashing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphport.runtime.feeds import feeds_for

GIB = 1024**3


@dataclass
class Probe:
    batch: int
    peak_bytes: int | None
    patches_per_s: float | None
    error: str | None = None


@dataclass
class BatchChoice:
    batch: int
    peak_bytes: int
    patches_per_s: float
    budget_bytes: int
    knee: int | None
    probes: list[Probe] = field(default_factory=list)

    def explain(self) -> str:
        knee = f", knee at {self.knee}" if self.knee else ""
        return (f"batch {self.batch}: {self.peak_bytes / GIB:.2f} GiB peak, {self.patches_per_s:.0f} patches/s"
                f"{knee} (budget {self.budget_bytes / GIB:.2f} GiB)")


def timed_runs(session, feeds: dict[str, np.ndarray], repeat: int) -> list[float]:
    """Wall time of each of `repeat` runs (the caller does any warm-up)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session.run(feeds)
        times.append(time.perf_counter() - t0)
    return times


def free_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _rss(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def _reset_peak() -> None:
    """Writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "ResourceExhausted" in type(e).__name__ or "OOM" in str(e)


def probe(session, batch: int, runs: int = 2) -> Probe:
    """Peak RSS and median throughput of `runs` runs at `batch` (after one warm-up run)."""
    try:
        feeds = feeds_for(session.info, batch, seed=batch)
        _reset_peak()
        session.run(feeds)
        times = timed_runs(session, feeds, runs)
        return Probe(batch, _rss("VmHWM"), batch / statistics.median(times))
    except Exception as e:
        if _is_oom(e):
            return Probe(batch, None, None, f"out of memory: {str(e)[:120]}")
        raise


def pick_batch_size(session, budget: int | None = None, fraction: float = 0.5, max_batch: int = 4096,
                    knee_gain: float = 0.05) -> BatchChoice:
    """Largest batch whose peak process memory stays under `budget` (default: `fraction` of free memory now)."""
    base = _rss("VmRSS")
    budget = budget if budget is not None else int(base + fraction * free_memory_bytes())
    probes: list[Probe] = []
    best: Probe | None = None
    knee, flat = None, 0
    b, step_fail = 1, None
    while b <= max_batch:
        p = probe(session, b)
        probes.append(p)
        fits = p.error is None and p.peak_bytes <= budget
        if not fits:
            step_fail = b
            break
        # A plateau must hold for two doublings in a row: one flat step is often just a noisy machine.
        flat = flat + 1 if best is not None and p.patches_per_s < best.patches_per_s * (1 + knee_gain) else 0
        if flat == 1:
            knee_candidate = best
        elif flat == 2:
            knee, best = knee_candidate.batch, knee_candidate
            break
        best = p if flat == 0 or best is None else best
        b *= 2
    if step_fail is not None and best is not None:  # refine between the last fit and the first failure
        lo, hi = best.batch, step_fail
        for _ in range(3):
            mid = (lo + hi) // 2
            if mid <= lo:
                break
            p = probe(session, mid)
            probes.append(p)
            if p.error is None and p.peak_bytes <= budget:
                best, lo = (p if p.patches_per_s >= best.patches_per_s else best), mid
            else:
                hi = mid
    if best is None:
        raise MemoryError(f"even batch 1 does not fit in {budget / GIB:.2f} GiB: {probes[0]}")
    return BatchChoice(best.batch, best.peak_bytes, best.patches_per_s, budget, knee, probes)
