"""`graphport predict`: audio files -> Essentia-compatible mel patches -> batched predictions, written per file.

Essentia's TensorflowPredictEffnetDiscogs runs one file at a fixed batch of 64 and zero-pads the audio to fill the
last batch. graphport's graphs take any batch, so here patches of consecutive files share batches (the model never
idles at a file's end), the last batch is simply smaller, and the batch size comes from memory (`--batch auto`).

Results are split back per file and each file is written atomically (temporary name, then rename) as soon as its
last patch is predicted: an interrupted run keeps every finished file, and a rerun skips them (`Outputs.done`).

model.py: the model (conversion cache, fingerprint, input check); files.py: inputs and OUT; local.py: the local
engine; threads.py: the model / front-end thread budget. The Ray engine is graphport/predict/ray_engine.py.
"""

from graphport.predict.files import MANIFEST, Item, Outputs, PredictConfig, collect_inputs, estimate_patches
from graphport.predict.local import SILENCE_PEAK, FileResult, Summary, file_patches, run_local
from graphport.predict.model import (
    cache_dir,
    check_model_input,
    file_sha256,
    model_fingerprint,
    pick_outputs,
    prepare_model,
)
from graphport.predict.threads import Threads, auto_threads

__all__ = ["MANIFEST", "SILENCE_PEAK", "FileResult", "Item", "Outputs", "PredictConfig", "Summary", "Threads",
           "auto_threads", "cache_dir", "check_model_input", "collect_inputs", "estimate_patches", "file_patches",
           "file_sha256", "model_fingerprint", "pick_outputs", "prepare_model", "run_local"]
