"""Run models the way hosts do: `load(path, backend) -> Session`, then `session.run(feeds)`.

Backends: `capi` (the TF C API), `session` (tf.compat.v1), `tf2` (tf.saved_model.load), `onnxruntime`, and
`essentia` (Essentia's libtensorflow 2.5, in its own venv). Importing this package does not import TensorFlow.
The room also holds what running and measuring need: worker processes per oneDNN setting (isolated.py), the one
child program for timing (measure.py, run by child.py), seeded feeds, batch-size probing, reading TF models and
writing SavedModels, and the `--trust` check. It imports only `core`.
"""

from graphport.runtime.backends import BACKENDS, Session, load

__all__ = ["BACKENDS", "Session", "load"]
