"""`graphport profile`: where the time goes, per op type, for inference and for load.

Inference: TF's own step stats (RunOptions FULL_TRACE -> RunMetadata), through tf.compat.v1, the C API, or TF2's
eager run metadata, averaged over runs; the op type is read from each node's timeline label, so Grappler's fused
kernels (`_FusedConv2D`...) show as what actually ran. Load: import-time shape inference is invisible to
RunMetadata, so the load phase is a wall-clock breakdown measured in a fresh subprocess, with Grappler's share of
the first run read from its own log lines (meta_optimizer at VLOG 1).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

from graphport.runtime.backends import load
from graphport.runtime.child import run_child
from graphport.runtime.feeds import feeds_for

_LABEL = re.compile(r"=\s*([A-Za-z0-9_>]+)\(")
_GRAPPLER = re.compile(r"meta_optimizer\.cc:\d+\]\s+([^:{]+).*time = ([0-9.]+)ms")


def op_table(step_stats_list) -> list[dict]:
    """Aggregate node self-times by op type: Type, #Occurrences, total self-time (us), % of host self-time."""
    total_us: dict[str, float] = defaultdict(float)
    nodes: dict[str, set] = defaultdict(set)
    for step_stats in step_stats_list:
        for dev in step_stats.dev_stats:
            for ns in dev.node_stats:
                m = _LABEL.search(ns.timeline_label)
                if not m or ns.node_name in ("_SOURCE", "_SINK"):
                    continue
                total_us[m.group(1)] += (ns.op_end_rel_micros - ns.op_start_rel_micros) / len(step_stats_list)
                nodes[m.group(1)].add(ns.node_name)
    grand = sum(total_us.values()) or 1.0
    rows = [{"type": t, "occurrences": len(nodes[t]), "self_us": us, "percent": 100 * us / grand}
            for t, us in total_us.items()]
    return sorted(rows, key=lambda r: -r["self_us"])


def profile_inference(path: str, backend: str, batch: int, runs: int) -> list[dict]:
    sess = load(path, backend)
    try:
        feeds = feeds_for(sess.info, batch)
        sess.run(feeds)  # Grappler and allocation happen here, not in the profile
        return op_table([sess.run_traced(feeds)[1] for _ in range(runs)])
    finally:
        sess.close()


def load_phases(path: str, backend: str, timeout: float) -> dict:
    """Wall-clock load breakdown in a fresh process, plus Grappler's time from its log."""
    job = json.dumps({"kind": "load_phases", "path": path, "backend": backend})
    res = run_child(["-m", "graphport.runtime.measure", job], timeout,
                    {"TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "meta_optimizer=1"})
    if res.value is None:
        return {"error": f"load {res.error}" if res.timed_out else res.error}
    phases = res.value
    passes: dict[str, float] = defaultdict(float)
    for m in _GRAPPLER.finditer(res.stderr):
        passes[m.group(1).strip()] += float(m.group(2)) / 1e3
    phases["grappler_s"] = sum(passes.values())
    phases["grappler_passes"] = dict(sorted(passes.items(), key=lambda kv: -kv[1]))
    return phases


def format_rows(rows: list[dict], top: int = 25) -> list[tuple[str, str, str, str]]:
    return [(r["type"], str(r["occurrences"]), f"{r['self_us']:.0f}", f"{r['percent']:.1f}") for r in rows[:top]]
