"""`bench --report`: load-time bars per backend and throughput against batch size, as PNG or a self-contained HTML."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from graphport.core.errors import require_extra

require_extra("report", "graphport bench --report")  # one line naming the pip command, not a ModuleNotFoundError
import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt


def _label(row: dict) -> str:
    flag = "" if row["backend"] in ("onnxruntime", "essentia") else (" +oneDNN" if row["onednn"] else " -oneDNN")
    return f"{Path(row['model']).name}\n{row['backend']}{flag}"


def figure(rows: list[dict]):
    ok = [r for r in rows if r.get("status") == "ok"]
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(13, 5))
    labels = [_label(r) for r in ok]
    load = [r["load_s"] for r in ok]
    first = [r["first_run_s"] for r in ok]
    y = range(len(ok))
    bars.barh(y, load, label="load")
    bars.barh(y, first, left=load, label="first run")
    bars.set_yticks(list(y), labels, fontsize=7)
    bars.set_xlabel("seconds")
    bars.set_title("load and first run per backend")
    bars.legend()
    for r in ok:
        pts = sorted((int(b), s["patches_per_s"]) for b, s in r["steady"].items() if "patches_per_s" in s)
        if pts:
            curve.plot(*zip(*pts), marker="o", label=_label(r).replace("\n", " "))
    curve.set_xscale("log", base=2)
    curve.set_xlabel("batch size")
    curve.set_ylabel("patches / s (median)")
    curve.set_title("throughput against batch size")
    curve.legend(fontsize=7)
    timed_out = [f"{_label(r).replace(chr(10), ' ')}: {r['status']}" for r in rows if r.get("status") != "ok"]
    if timed_out:
        fig.text(0.01, 0.01, "not measured: " + "; ".join(timed_out), fontsize=7, color="red")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def write_report(rows: list[dict], path: str | Path) -> Path:
    """A .png is written as is; any other suffix gets an HTML page with the PNG embedded."""
    path = Path(path)
    fig = figure(rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    if path.suffix.lower() == ".png":
        path.write_bytes(buf.getvalue())
    else:
        img = base64.b64encode(buf.getvalue()).decode()
        path.write_text(f"<!doctype html><meta charset=utf-8><title>graphport bench</title>"
                        f"<h1>graphport bench</h1><img alt='bench' src='data:image/png;base64,{img}'>\n")
    return path
