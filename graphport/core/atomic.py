"""The one way graphport writes files and output folders: atomic, kill-safe, with modes from the umask.

A reader (a host loading the model, a resumed `predict`) must never see half an output, and a run killed at any
instant must leave the old output or the new one, never neither. So everything is written beside its target
under a hidden temporary name and renamed into place. Folders are swapped in two renames: the old one is moved into
a hidden `.NAME.old-*` folder first; the next `output_lock` on the same target puts it back if a kill struck between
the two renames, and removes stale temporaries. `mkstemp`/`mkdtemp` create 0600/0700 entries; a host running as
another user (a service account) must be able to read the model, so modes are reset to what the umask allows.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_tree(root: Path) -> None:
    """Give `root` and everything below it the modes a plain mkdir/open would have given."""
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for parent, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(parent, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(parent, f), 0o666 & ~mask)


def write_file(target: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `target` atomically: bytes, text (UTF-8), or a function that writes to a binary file object."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A hidden, empty folder beside `target` to build the output in; removed on exit unless moved into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Swap the folder `src` into place at `dst`, so `dst` is at every moment either the old or the new whole."""
    _chmod_tree(src)
    if not dst.exists():
        os.rename(src, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.rename(dst, old / "x")
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def publish_dir(src: Path, dst: Path) -> bool:
    """Move `src` into place at `dst` unless `dst` already exists (a cache entry another run wrote first)."""
    _chmod_tree(src)
    try:
        os.rename(src, dst)
    except OSError:
        if not dst.exists():
            raise
        return False
    return True


@contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[None]:
    """One writer at a time per output folder (a lock on its parent). Holding it, whatever a killed run left is
    stale: an output moved aside but not yet replaced is put back, temporary folders are removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for old in target.parent.glob(f".{target.name}.old-*"):
            if not target.exists() and (old / "x").is_dir():
                os.rename(old / "x", target)
            shutil.rmtree(old, ignore_errors=True)
        for tmp in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        yield
    finally:
        os.close(fd)
