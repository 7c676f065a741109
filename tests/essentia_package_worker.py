"""Run in Essentia's venv: read a model's metadata JSON the way Essentia's model pages do, and predict with it.

Every field the published loaders read comes from the JSON: `inference.sample_rate` (MonoLoader), the algorithm
class named by `inference.algorithm`, `schema.inputs[0].name` and the `schema.outputs` entry whose
`output_purpose` is "predictions" (the algorithm's `input` and `output`). Nothing else is passed.

Usage: python essentia_package_worker.py MODEL.pb MODEL.json AUDIO OUT.npy
"""

import json
import sys

import essentia.standard as es
import numpy as np


def main(pb: str, js: str, audio_path: str, out: str) -> None:
    with open(js) as f:
        meta = json.load(f)
    algorithm = getattr(es, meta["inference"]["algorithm"])
    source = meta["schema"]["inputs"][0]["name"]
    target = next(o["name"] for o in meta["schema"]["outputs"] if o["output_purpose"] == "predictions")
    audio = es.MonoLoader(filename=audio_path, sampleRate=meta["inference"]["sample_rate"], resampleQuality=4)()
    predictions = algorithm(graphFilename=pb, input=source, output=target)(audio)
    np.save(out, np.asarray(predictions, dtype=np.float32))


if __name__ == "__main__":
    main(*sys.argv[1:5])
