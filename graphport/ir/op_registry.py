"""One registry of per-op code, keyed by (domain, op_type, since_version), as onnx2torch's OperationDescription.

Both tables of per-op code use it: the TF emitters (`emit/tf/registry.py`) and the constant folder's kernels
(`passes/fold.py`). Code is registered for the `since_version` of the ONNX schema whose behaviour it implements; a
model at opset N gets the entry for the schema `onnx.defs` says is in force at N in the node's domain, or the
latest one registered before it. Behaviour that changes with the opset is a separate entry, not an inline opset
check; a second entry for one (domain, op, since) or a since that ONNX never defined fails at import. A domain
nothing is registered for (a custom one) simply has no entries: no code refuses it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Generic, TypeVar

import onnx

T = TypeVar("T")
DEFAULT_DOMAIN = ""


class RegistryError(Exception):
    """An entry registered twice for one (domain, op_type, since), or for a version ONNX never defined."""


def _domain(domain: str) -> str:
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


@cache
def since_version(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN) -> int:
    """The since_version of the schema of `op_type` in `domain` in force at `opset` (`opset` without one)."""
    try:
        return onnx.defs.get_schema(op_type, opset, _domain(domain)).since_version
    except onnx.defs.SchemaError:
        return opset


class OpRegistry(Generic[T]):
    """Entries per (domain, op_type), each valid from its since_version until a later one takes over."""

    def __init__(self, what: str) -> None:
        self.what = what  # "emitter", "fold kernel": named in errors
        self._entries: dict[tuple[str, str], list[tuple[int, T]]] = {}

    def register(self, *op_types: str, since: int = 1, domain: str = DEFAULT_DOMAIN) -> Callable[[T], T]:
        """Decorator: register the function for `op_types` from schema version `since` on (1: every version).
        `since` must be a real since_version of each op, so a typo fails at import rather than silently selecting
        the wrong entry."""
        def deco(fn: T) -> T:
            for op_type in op_types:
                entries = self._entries.setdefault((_domain(domain), op_type), [])
                if any(s == since for s, _ in entries):
                    raise RegistryError(f"{op_type} has a {self.what} for since_version {since} already")
                if since != 1 and since_version(op_type, since, domain) != since:
                    raise RegistryError(f"{op_type} has no ONNX schema introduced at version {since}")
                entries.append((since, fn))
                entries.sort(key=lambda e: e[0])
            return fn
        return deco

    def lookup(self, op_type: str, opset: int, domain: str = DEFAULT_DOMAIN) -> T | None:
        """The entry for `op_type` at the opset of its domain, or None when there is none for that version."""
        version = since_version(op_type, opset, domain)
        found = None
        for since, fn in self._entries.get((_domain(domain), op_type), []):
            if since <= version:
                found = fn
        return found

    def op_types(self, domain: str = DEFAULT_DOMAIN) -> list[str]:
        return sorted(t for d, t in self._entries if d == _domain(domain))

    def override(self, op_type: str, fn: T, domain: str = DEFAULT_DOMAIN) -> Callable[[], None]:
        """Replace every version's entry of `op_type` with `fn` (tests use it to show that a check catches a
        deliberately wrong emitter); returns the function that puts the old entries back."""
        key = (_domain(domain), op_type)
        old = self._entries.get(key)
        self._entries[key] = [(1, fn)]

        def restore() -> None:
            if old is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = old
        return restore
