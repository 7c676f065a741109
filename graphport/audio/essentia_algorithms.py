"""Which Essentia algorithms graphport's front end stands in for, and the patching each one does by default.

Why: an Essentia metadata JSON names the algorithm a model runs under (`inference.algorithm`); that choice fixes
the features and the patching. graphport's front end is Essentia's TensorflowInputMusiCNN (16 kHz, 96 mel bands,
frame 512, hop 256), which these algorithms use; their defaults were read from essentia-tensorflow 2.1b6's own
parameter docs. Others (VGGish's 64 bands, TempoCNN at 11,025 Hz, FSD-SINet) need a front end graphport lacks,
and are refused by name rather than fed features they were not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphport.audio.frontend import SAMPLE_RATE
from graphport.core.errors import GraphportError


@dataclass(frozen=True)
class Patching:
    patch_size: int
    patch_hop: int
    last_patch: str = "discard"


MUSICNN_FRONT_END = {
    "TensorflowPredictEffnetDiscogs": Patching(128, 62),
    "TensorflowPredictMusiCNN": Patching(187, 93),
    "TensorflowPredictMAEST": Patching(1876, 1875),
}
OTHER_FRONT_ENDS = {
    "TensorflowPredictVGGish": "TensorflowInputVGGish (64 mel bands, 10 ms hop)",
    "TensorflowPredictTempoCNN": "TempoCNN's 40-band mel at 11,025 Hz",
    "TensorflowPredictFSDSINet": "TensorflowInputFSDSINet",
    "TensorflowPredictCREPE": "raw 16 kHz frames (CREPE)",
}


def patching_for(algorithm: str | None, sample_rate: int | None, patching_given: bool = False) -> Patching | None:
    """The patching of `algorithm`, checked against the front end: a user error if graphport cannot feed it. None
    where the algorithm is not named, or is unknown and the user gave the patching (`patching_given`)."""
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        raise GraphportError(f"the model's metadata asks for audio at {sample_rate} Hz; graphport's front end "
                             f"(Essentia's TensorflowInputMusiCNN) runs at {SAMPLE_RATE} Hz only.")
    if algorithm is None:
        return None
    if algorithm in MUSICNN_FRONT_END:
        return MUSICNN_FRONT_END[algorithm]
    if algorithm in OTHER_FRONT_ENDS:
        raise GraphportError(f"the model's metadata names {algorithm}, whose features come from "
                             f"{OTHER_FRONT_ENDS[algorithm]}; graphport's front end computes TensorflowInputMusiCNN's "
                             f"only ({', '.join(MUSICNN_FRONT_END)}).")
    if patching_given:
        return None
    raise GraphportError(f"the model's metadata names the algorithm '{algorithm}', which graphport does not know; "
                         f"it runs models of {', '.join(MUSICNN_FRONT_END)}. Pass --patch-size and --patch-hop to "
                         "run it anyway.")
