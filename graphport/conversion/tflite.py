"""`convert --tflite`: `model.tflite` from the same verified flat graph, with the dynamic batch kept.

Why: onnx2tf's and litert-torch's default output is TFLite, and a user who wants one converter for server and
device should not leave graphport for it. TF's converter takes the SavedModel graphport already wrote (one
function, weights as Consts), so the `.tflite` holds the graph that was verified; dims that are dynamic in the
signature stay -1 in the flatbuffer's `shape_signature` and the interpreter resizes them. Only TFLite's builtin
ops are allowed (no Flex delegate, which device builds rarely carry): an op outside them is listed with its node,
and the `.pb` and SavedModel are written all the same. Outputs are compared with ORT's, from the same
verification cases, in LiteRT's interpreter (`ai-edge-litert`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from graphport.conversion.verify import OutputCheck, compare
from graphport.core.errors import require_extra
from graphport.runtime.tf_saved_model import py_identifier

LABEL = "LiteRT"
# where a converter error line names a node: loc(callsite(fused["OpType:", "model/node/name@function"] at ...))
_NODE = re.compile(r'fused\["(\w+):", "([^"@]+)@')


def write_tflite(saved_model: Path, path: Path) -> list[tuple[str, str, str]]:
    """Write `path`; [] when written, else (TF op, node, reason) for every node TFLite's builtins cannot run."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        path.write_bytes(converter.convert())
    except Exception as e:  # noqa: BLE001  ConverterError, and whatever MLIR's import raises
        return unsupported_nodes(str(e))
    return []


def unsupported_nodes(message: str) -> list[tuple[str, str, str]]:
    """(op, node, reason) per node named in a converter error, each node once; the node names are the `.pb`'s."""
    found: dict[str, tuple[str, str, str]] = {}
    for line in message.splitlines():
        located = _NODE.search(line)
        if not located or "error" not in line:
            continue
        op, name = located.group(1), located.group(2).removeprefix("model/")
        reason = line.rsplit("): ", 1)[-1].removeprefix("error: ").strip()
        if name not in found or "neither a custom op" in reason:
            found[name] = (op, name, reason[:200])
    if not found:
        first = next((line for line in message.splitlines() if "error" in line.lower()), message[:300])
        return [("?", "?", first.strip()[:300])]
    return sorted(found.values(), key=lambda item: item[1])


def check_tflite(path: Path, feeds: dict[tuple, dict[str, np.ndarray]], refs: dict[tuple, dict[str, np.ndarray]],
                 outputs: list[str], variants: list[dict[str, int]], atol: float, rtol: float,
                 floors: dict[str, float]) -> list[OutputCheck]:
    """The `.tflite` in LiteRT on every verification case, against ORT's outputs, with the verification's floors."""
    require_extra("tflite", "graphport convert --tflite")
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    checks = []
    for case, inputs in feeds.items():
        got = runner(**{py_identifier(k): v for k, v in inputs.items()})
        for name in outputs:
            max_abs, max_rel, ok = compare(refs[case][name], got[py_identifier(name)], atol, rtol, floors.get(name, 0.0))
            checks.append(OutputCheck(case[0], name, LABEL, max_abs, max_rel, ok, variants[case[1]]))
    return checks
