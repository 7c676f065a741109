"""Essentia's own mel frames and patches for a signal; run by path with the Essentia venv's python.

This is the reference side of tests/test_audio.py and tests/test_predict.py: it must never import `tensorflow` or
`graphport` (essentia-tensorflow's libtensorflow 2.5 clashes with the TF wheel). It builds the streaming network that
TensorflowPredictEffnetDiscogs builds inside (FrameCutter >> TensorflowInputMusiCNN >> VectorRealToTensor), with
VectorRealToTensor accumulating every patch (batch -1) instead of feeding a model.

Usage: python essentia_mel_worker.py JOB_DIR. JOB_DIR/job.json holds {"signals": [paths], "patch_size": 128,
"patch_hop": 62, "last_patch_mode": "discard"|"repeat"}. A path is an .npy of 16 kHz float32 samples, or an audio
file that MonoLoader(sampleRate=16000) loads, as TensorflowPredictEffnetDiscogs' users do. For signal i it writes
JOB_DIR/samples_<i>.npy (the 16 kHz signal), JOB_DIR/frames_<i>.npy ([frames, 96]) and JOB_DIR/patches_<i>.npy
([patches, 128, 96], possibly 0 patches).
"""

from __future__ import annotations

import json
import os
import sys


def main(job_dir: str) -> int:
    import essentia
    import essentia.standard as ess_std
    import essentia.streaming as ess
    import numpy as np

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    with open(os.path.join(job_dir, "job.json")) as f:
        job = json.load(f)
    for i, path in enumerate(job["signals"]):
        signal = np.load(path) if path.endswith(".npy") else ess_std.MonoLoader(filename=path, sampleRate=16000)()
        signal = np.ascontiguousarray(signal, dtype=np.float32)
        np.save(os.path.join(job_dir, f"samples_{i}.npy"), signal)
        pool = essentia.Pool()
        source = ess.VectorInput(signal)
        cutter = ess.FrameCutter(frameSize=512, hopSize=256)
        mel = ess.TensorflowInputMusiCNN()
        to_tensor = ess.VectorRealToTensor(shape=[-1, 1, job["patch_size"], 96], patchHopSize=job["patch_hop"],
                                           lastPatchMode=job["last_patch_mode"])
        source.data >> cutter.signal
        cutter.frame >> mel.frame
        mel.bands >> to_tensor.frame
        mel.bands >> (pool, "frames")
        to_tensor.tensor >> (pool, "patches")
        try:
            essentia.run(source)
        except RuntimeError as e:  # accumulate mode raises when the stream ends without one patch
            if "enough frames" not in str(e):
                raise
        names = pool.descriptorNames()
        frames = np.array(pool["frames"], np.float32) if "frames" in names else np.zeros((0, 96), np.float32)
        patches = (np.concatenate([np.asarray(t, np.float32) for t in pool["patches"]])[:, 0]
                   if "patches" in names else np.zeros((0, job["patch_size"], 96), np.float32))
        np.save(os.path.join(job_dir, f"frames_{i}.npy"), frames.reshape(-1, 96))
        np.save(os.path.join(job_dir, f"patches_{i}.npy"), patches)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
