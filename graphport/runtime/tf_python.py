"""Import TensorFlow's Python package without the Keras load it starts by itself.

`import tensorflow` ends by importing `keras.src.optimizers` "so that any function/method that needs to happen at
load time will trigger, eg registration of optimizers in the SavedModel registry" (TF's own comment). That loads
all of Keras 3 (and IPython where it is installed): 0.9 s of a 2.6 s import, measured on the 2-core machine. A
converter builds and saves plain graphs and functions with no Keras objects in them, so it needs none of that; TF
wraps the import in `except ImportError`, and a `None` in `sys.modules` makes it fail at once. The entry is removed
again, so Keras still imports normally for anyone who asks for it later.
"""

from __future__ import annotations

import sys
from types import ModuleType

_KERAS_EAGER_LOAD = "keras.src.optimizers"


def import_tensorflow() -> ModuleType:
    """`tensorflow`, imported now (without Keras) unless something imported it already."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    blocked = _KERAS_EAGER_LOAD not in sys.modules
    if blocked:
        sys.modules[_KERAS_EAGER_LOAD] = None  # type: ignore[assignment]
    try:
        import tensorflow
    finally:
        if blocked and sys.modules.get(_KERAS_EAGER_LOAD, 0) is None:
            del sys.modules[_KERAS_EAGER_LOAD]
    return tensorflow
