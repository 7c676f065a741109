"""How much of each zoo model's time goes to ops that move data without computing (issue #25).

Why: a TF graph can only be as fast as TF's kernels for the ops it must hold (benchmarks/kernel_floor.py), so the
part of the time a converter still controls is what it adds: Transposes, Pads, Concats, copies, Gathers used as
permutations. This converts every zoo model (tests/zoo_models.py, cached by benchmarks/zoo_speed.py's `prepare`)
and reads TF's own step stats (`graphport profile`'s op table) in a fresh process per oneDNN setting.

usage: python benchmarks/overhead_share.py [--models a,b] [--batch 16] [--runs 3] [--cache DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

# Ops whose kernels only move or copy data. Reshape and Squeeze are usually free in TF (a new header over the same
# buffer) and so show little self-time; they are counted, as the issue asks, for the cases where they copy.
MOVE_OPS = frozenset({"Transpose", "_MklTranspose", "Pad", "PadV2", "MirrorPad", "ConcatV2", "_MklConcatV2",
                      "Concat", "Reshape", "_MklReshape", "Squeeze", "ExpandDims", "GatherV2", "Gather", "Tile",
                      "Pack", "Unpack", "Split", "SplitV", "Slice", "StridedSlice", "BroadcastTo", "ReverseV2",
                      "DepthToSpace", "SpaceToDepth", "Identity"})
TARGET = 5.0  # percent of the profiled time

PROFILE = """
import json, sys
from graphport.tools.op_profile import profile_inference
print(json.dumps({"rows": profile_inference(sys.argv[1], "capi", int(sys.argv[2]), int(sys.argv[3]))}))
"""


def share(rows: list[dict]) -> tuple[float, list[tuple[str, float]]]:
    """(percent of self-time in MOVE_OPS, the movers by percent)."""
    movers = sorted(((r["type"], r["percent"]) for r in rows if r["type"] in MOVE_OPS), key=lambda t: -t[1])
    return sum(p for _, p in movers), movers


def _cell(c: dict) -> str:
    if "error" in c:
        return c["error"][:40]
    return f"{c['percent']:.1f} %" + (" **over**" if c["percent"] > TARGET else "")


def _top(c: dict) -> str:
    return ", ".join(f"{t} {p:.1f}" for t, p in c.get("movers", [])[:2]) or "-"


def main(argv: list[str] | None = None) -> dict:
    from zoo_models import ZOO
    from zoo_speed import prepare

    from graphport.predict.model import converter_stamp
    from graphport.runtime.child import run_child

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated zoo names (default: the whole zoo)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3, help="traced runs averaged per profile")
    ap.add_argument("--cache", default=None, help="keep exports and conversions in this folder")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or list(ZOO)
    cache = Path(args.cache or tempfile.mkdtemp(prefix="overhead-share-"))
    cache.mkdir(parents=True, exist_ok=True)
    stamp = converter_stamp()
    results: dict = {}
    lines = ["| model | moving data, oneDNN on | off | largest movers (on / off) |", "|---|---:|---:|---|"]
    for name in names:
        try:
            folder = prepare(name, cache, stamp)
        except Exception as e:  # noqa: BLE001 (one model that fails to convert is reported, the rest go on)
            results[name] = {"error": str(e)[:300]}
            lines.append(f"| {name} | conversion failed | | {str(e)[:80]} |")
            continue
        cells = {}
        for setting in ("on", "off"):
            res = run_child(["-c", PROFILE, str(folder), str(args.batch), str(args.runs)], 600,
                            {"TF_ENABLE_ONEDNN_OPTS": "1" if setting == "on" else "0"})
            if res.value is None:
                cells[setting] = {"error": res.error}
                continue
            pct, movers = share(res.value["rows"])
            cells[setting] = {"percent": pct, "movers": movers, "ops": res.value["rows"]}
        results[name] = cells

        lines.append(f"| {name} | {_cell(cells['on'])} | {_cell(cells['off'])} | {_top(cells['on'])} / "
                     f"{_top(cells['off'])} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    over = [n for n, c in results.items() if any(v.get("percent", 0) > TARGET for v in c.values() if isinstance(v, dict))]
    print(f"over {TARGET:g} %: {', '.join(over) or 'none'}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
