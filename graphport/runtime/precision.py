"""The float precision of the TF sessions graphport opens itself: fp32 (the default, equal to ORT) or bf16.

Why: TF's oneDNN build can rewrite a graph's convolutions, matmuls and their neighbours to bfloat16 when a session
starts (Grappler's `auto_mixed_precision_onednn_bfloat16`). On a CPU with AVX-512 BF16 that ran the seed B0 at
batch 64 in 0.082 s against 0.120 s in fp32 (2-core AMD EPYC, oneDNN on, 2026-12-07). It is a session option, so
only sessions graphport opens (`predict`, `bench`, `runtime.load`, `example`) can have it: Essentia's
TensorflowPredict opens its sessions with default options. It needs the CPU's bf16 instructions (without them
oneDNN emulates bf16, slower than fp32) and oneDNN itself: TF's Eigen kernels have no bf16 fast path, and the
rewrite is oneDNN's. bf16 keeps 8 significant bits, so results move by about 1e-2 of an output's scale; `convert`
measures by how much for each model (conversion/verify.py) and `auto` keeps fp32 for a model that moved further.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from graphport.core.errors import GraphportError

PRECISIONS = ("fp32", "bf16", "auto")
TF_BACKENDS = ("capi", "session", "tf2")  # the backends whose sessions graphport configures
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of the bf16 dot-product instructions
# TF turns oneDNN on by itself (TF_ENABLE_ONEDNN_OPTS unset) where the CPU has one of these (IsMKLEnabled in TF's
# core/util/util.cc); on other CPUs it stays off.
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
BF16_EPS = 2.0 ** -7  # bfloat16's machine epsilon: 7 stored mantissa bits


class PrecisionUnavailable(GraphportError):
    """bf16 was asked for where it cannot run: the CPU, the oneDNN setting or the backend rules it out."""


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere: then bf16 is never assumed)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def onednn_on(environ: dict[str, str] | None = None) -> bool:
    """Whether TF in a process with `environ` (default: this one's) runs oneDNN kernels."""
    value = (os.environ if environ is None else environ).get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    if value in ("0", "false"):
        return False
    if value in ("1", "true"):
        return True
    return bool(cpu_flags() & set(ONEDNN_DEFAULT_FLAGS))


def bf16_obstacle(onednn: bool | None = None) -> str | None:
    """Why bf16 cannot run here (None: it can); `onednn` None reads this process's setting."""
    if not cpu_flags() & set(BF16_FLAGS):
        return (f"this CPU has neither {' nor '.join(BF16_FLAGS)} in its flags (AVX-512 BF16 or AMX), so oneDNN "
                "would emulate bfloat16 slower than fp32 runs")
    if not (onednn_on() if onednn is None else onednn):
        return "oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0), and bf16 is a oneDNN rewrite"
    return None


def choose(precision: str, backend: str, onednn: bool | None = None, verified: bool | None = None) -> str:
    """'fp32' or 'bf16' for `precision` on `backend`. 'auto' is bf16 only where it can run and where the model's
    conversion did not find bf16 outside its tolerance (`verified` False); 'bf16' where it cannot run is an error."""
    if precision not in PRECISIONS:
        raise GraphportError(f"unknown precision '{precision}'; choose from {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        return "fp32"
    obstacle = (None if backend in TF_BACKENDS else
                f"the {backend} backend's sessions are not graphport's to configure (only {', '.join(TF_BACKENDS)} "
                "are)")
    obstacle = obstacle or bf16_obstacle(onednn)
    if precision == "auto":
        return "bf16" if obstacle is None and verified is not False else "fp32"
    if obstacle:
        raise PrecisionUnavailable(f"--precision bf16 cannot run: {obstacle}. Use --precision fp32, or auto to "
                                   "take bf16 only where it runs.")
    return "bf16"
