"""Write a flat GraphDef as a SavedModel: the one writer behind `convert`'s and `doctor --fix`'s `saved_model/`.

It lives with the TF model reader (tf_model.py) because both the converter and doctor write SavedModels and
neither may import the other. The SavedModel's single function imports the frozen GraphDef, so its weights are
`Const`s inside the function: no variables and no weights as function arguments (the form that loads fast in old
C API hosts, docs/background.md §1). A graph with v1 control flow is saved as a TF1 SavedModel instead (see
graphport/conversion/artifacts.py for why).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2


def py_identifier(name: str) -> str:
    """A keyword-argument name for an ONNX input ('input.1' -> 'input_1')."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"x_{ident}"


def save_flat_saved_model(graph_def, inputs: dict[str, tf.TensorSpec], outputs: list[str], path: Path,
                          keys: list[str] | None = None) -> dict:
    """Save a flat GraphDef as a TF2 SavedModel callable as `m(<arg>=x)`.

    `inputs` maps Placeholder op names to specs (the spec's name is the keyword argument), `outputs` lists op
    names, `keys` the signature's output keys. Returns the C API tensor names of the serving signature, read back
    from what was written: {"inputs": {op: tensor}, "outputs": {op: tensor}}.
    """
    # import_graph_def adds default attr values to the GraphDef it is given, in place; the converter saves while
    # verification serialises the same GraphDef in another thread, and a half-added AttrValue reached the workers
    # ("AttrValue missing value ... 'transpose_b'"). Saving works on its own copy.
    graph_def = type(graph_def).FromString(graph_def.SerializeToString())
    keys = keys or [py_identifier(o) for o in outputs]
    if V1_CONTROL_OPS & {n.op for n in graph_def.node}:
        return _save_v1_saved_model(graph_def, inputs, outputs, path, keys)
    args = [spec.name for spec in inputs.values()]
    input_map_keys = [f"{op}:0" for op in inputs]
    fetches = [f"{op}:0" for op in outputs]

    def body(*tensors):
        outs = tf.graph_util.import_graph_def(graph_def, input_map=dict(zip(input_map_keys, tensors)),
                                              return_elements=fetches, name="model")
        return dict(zip(keys, outs))

    body.__signature__ = inspect.Signature(
        [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args])
    fn = tf.function(body, input_signature=list(inputs.values()), autograph=False)  # no Python control flow to convert
    module = tf.Module()
    module.__call__ = fn
    tf.saved_model.save(module, str(path), signatures={"serving_default": fn})
    sm = _without_restore_and_init(path)
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    return {"inputs": {op: sig.inputs[a].name for op, a in zip(inputs, args)},
            "outputs": {op: sig.outputs[k].name for op, k in zip(outputs, keys)}}


def _without_restore_and_init(path: Path) -> saved_model_pb2.SavedModel:
    """Drop the MetaGraph's saver and init op, which a SavedModel with no variables and no tables does not need.

    The C API's loader (TF_LoadSessionFromSavedModel, what Essentia calls) runs both, and in TF 2.17 and 2.21 each
    run builds an executor over a graph that carries the whole function library: 0.07 s for the restore and 0.05 s
    for the NoOp init on the seed B0 (load 0.24 s -> 0.09 s; libtensorflow 2.5 took 0.05 s either way). TF2's
    `tf.saved_model.load` reads the (empty) checkpoint through the object graph, not the saver, so variables/
    stays. The fingerprint is made again for the edited file.
    """
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    for mg in sm.meta_graphs:
        mg.ClearField("saver_def")
        mg.collection_def.pop("saved_model_main_op", None)
        mg.signature_def.pop("__saved_model_init_op", None)
    (path / "saved_model.pb").write_bytes(sm.SerializeToString())
    (path / "fingerprint.pb").write_bytes(fingerprinting.CreateFingerprintDef(str(path)))
    return sm


V1_CONTROL_OPS = {"Enter", "Exit", "NextIteration", "LoopCond", "Switch", "Merge"}


def _save_v1_saved_model(graph_def, inputs: dict[str, tf.TensorSpec], outputs: list[str], path: Path,
                         keys: list[str]) -> dict:
    """The graph as it is, in a TF1 SavedModel with a `serving_default` signature and no variables."""
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph_def, name="")
        sig = tf.compat.v1.saved_model.predict_signature_def(
            {spec.name: g.get_tensor_by_name(f"{op}:0") for op, spec in inputs.items()},
            {k: g.get_tensor_by_name(f"{op}:0") for op, k in zip(outputs, keys)})
        with tf.compat.v1.Session(graph=g) as sess:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
    return {"inputs": {op: f"{op}:0" for op in inputs}, "outputs": {op: f"{op}:0" for op in outputs}}
