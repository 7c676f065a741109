"""Run tests/essentia_mel_worker.py in the Essentia venv: Essentia's own mel frames and patches, the reference."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from graphport.runtime.essentia_host import ensure_essentia_python

WORKER = Path(__file__).with_name("essentia_mel_worker.py")


def essentia_patches(signals: list[np.ndarray], patch_size: int = 128, patch_hop: int = 62,
                     last_patch_mode: str = "discard", timeout: float = 300.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frames [n, 96], patches [p, patch_size, 96]) per 16 kHz signal, computed by Essentia's streaming network."""
    return [(frames, patches) for _, frames, patches in
            _run(signals, patch_size, patch_hop, last_patch_mode, timeout)]


def essentia_load_and_patch(paths: list[os.PathLike], timeout: float = 300.0) \
        -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(16 kHz samples, frames, patches) per audio file, loaded by Essentia's MonoLoader (its decoder, downmix and
    resampler), then the same network: the reference for a whole `predict` front end."""
    return _run(paths, 128, 62, "discard", timeout)


def _run(inputs: list, patch_size: int, patch_hop: int, last_patch_mode: str,
         timeout: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    python = ensure_essentia_python()
    with tempfile.TemporaryDirectory(prefix="graphport-essentia-mel-") as tmp:
        paths = []
        for i, s in enumerate(inputs):
            if isinstance(s, np.ndarray):
                paths.append(os.path.join(tmp, f"signal_{i}.npy"))
                np.save(paths[-1], np.asarray(s, np.float32))
            else:
                paths.append(os.fspath(s))
        job = {"signals": paths, "patch_size": patch_size, "patch_hop": patch_hop, "last_patch_mode": last_patch_mode}
        Path(tmp, "job.json").write_text(json.dumps(job))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
        proc = subprocess.run([str(python), str(WORKER), tmp], capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
        if proc.returncode:
            raise RuntimeError(f"Essentia worker failed ({proc.returncode}): {proc.stderr[-3000:]}")
        return [tuple(np.load(os.path.join(tmp, f"{kind}_{i}.npy")) for kind in ("samples", "frames", "patches"))
                for i in range(len(inputs))]
