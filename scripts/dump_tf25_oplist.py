"""Dump the op registry of Essentia's bundled libtensorflow 2.5 as a serialized OpList.

graphport ships the result as graphport/emit/tf/tf25_ops.pb and checks every emitted graph against it, so a graph
that libtensorflow 2.5 could not import is caught at conversion time. Run with the Essentia venv's python
(essentia must not share a process with the tensorflow wheel):

    $(python -c 'from graphport.runtime.essentia_host import ensure_essentia_python as e; print(e())') \\
        scripts/dump_tf25_oplist.py > graphport/emit/tf/tf25_ops.pb
"""

import ctypes
import glob
import os
import sys


class _Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t), ("data_deallocator", ctypes.c_void_p)]


def main() -> None:
    site = os.path.join(sys.prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
    (path,) = glob.glob(os.path.join(site, "essentia_tensorflow.libs", "libtensorflow-*.so*"))
    lib = ctypes.CDLL(path)
    lib.TF_GetAllOpList.restype = ctypes.POINTER(_Buffer)
    buf = lib.TF_GetAllOpList()
    sys.stdout.buffer.write(ctypes.string_at(buf.contents.data, buf.contents.length))


if __name__ == "__main__":
    main()
