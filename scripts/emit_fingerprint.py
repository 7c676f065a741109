"""Fingerprint the emitted graphs (sha256 of each model.pb) of the seed B0 and every zoo model.

Why: a refactor that promises "behaviour unchanged" (issue #24) must show that the converter emits the same bytes
before and after. Run it on the old tree with `--write before.json`
(`PYTHONPATH=<old checkout>` puts that tree's graphport first), on the new one with `--compare before.json`;
the ONNX exports are cached in `--cache` so that both runs convert the very same files (torch's exporter is not
byte-stable across processes). Conversion runs without verification: only the emitted graph is compared.

Usage: python scripts/emit_fingerprint.py --cache DIR (--write FILE | --compare FILE)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("GRAPHPORT_FIXTURES", ROOT.parent / "shared" / "fixtures"))
SEED = FIXTURES / "seed-effnet-b0" / "effnet_opset11_dynamic.onnx"


def exports(cache: Path) -> dict[str, Path]:
    """The seed and every zoo model as ONNX files in `cache`, exporting only those not there yet."""
    sys.path.insert(0, str(ROOT / "tests"))
    from zoo_models import ZOO, zoo_model

    cache.mkdir(parents=True, exist_ok=True)
    models = {"seed-b0": SEED}
    for name in ZOO:
        path = cache / f"{name}.onnx"
        if not path.exists():
            zoo_model(name, path)
        models[name] = path
    return models


def _canonical(pb: bytes) -> bytes:
    """The GraphDef serialized deterministically: protobuf writes map fields (a NodeDef's attrs) in an order that
    may differ between processes, so the bytes of two writes of one graph can differ."""
    from tensorflow.core.framework import graph_pb2

    return graph_pb2.GraphDef.FromString(pb).SerializeToString(deterministic=True)


def fingerprints(models: dict[str, Path]) -> dict[str, str]:
    import graphport

    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models.items():
            out = Path(tmp) / name
            graphport.convert(path, out, verify_outputs=False)
            found[name] = hashlib.sha256(_canonical((out / "model.pb").read_bytes())).hexdigest()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path)
    mode.add_argument("--compare", type=Path)
    args = ap.parse_args()
    found = fingerprints(exports(args.cache))
    if args.write:
        args.write.write_text(json.dumps(found, indent=1) + "\n")
        print(f"{len(found)} graphs fingerprinted into {args.write}")
        return
    before = json.loads(args.compare.read_text())
    changed = sorted(n for n in before if found.get(n) != before[n])
    print(f"{len(before) - len(changed)} of {len(before)} graphs byte-identical")
    for name in changed:
        print(f"  changed: {name}")
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
