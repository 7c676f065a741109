"""Op registry: `(op_type, since_version) -> handler`, as in onnx2torch.

A handler is registered for the `since_version` of the ONNX schema whose behaviour it implements
(`@op("Softmax", since=13)`); a model at opset N gets the handler for the schema `onnx.defs` says is in force at
N, or the latest one registered before it. Behaviour that changes with the opset is therefore a separate handler,
not an inline opset check, and adding an op (or a version of one) means adding one function.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

import onnx

from graphport.emit.tf.decline import Decline

if TYPE_CHECKING:
    from graphport.emit.tf.context import EmitContext
    from graphport.ir.graph import Node

__all__ = ["Decline", "Handler", "lookup", "op", "since_version", "supported_ops"]

Handler = Callable[["EmitContext", "Node"], None]
_HANDLERS: dict[str, list[tuple[int, Handler]]] = {}  # op_type -> [(since_version, handler)], sorted


class RegistryError(Exception):
    """A handler registered twice for one (op_type, since), or for a version ONNX never defined."""


def op(*op_types: str, since: int = 1) -> Callable[[Handler], Handler]:
    """Register `fn` for `op_types` from schema version `since` on, until a later registration takes over.

    `since` must be a real `since_version` of each op (1 stands for "every version"), so a typo fails at import
    rather than silently selecting the wrong handler."""
    def deco(fn: Handler) -> Handler:
        for t in op_types:
            entries = _HANDLERS.setdefault(t, [])
            if any(s == since for s, _ in entries):
                raise RegistryError(f"{t} has a handler for since_version {since} already")
            if since != 1 and since_version(t, since) != since:
                raise RegistryError(f"{t} has no ONNX schema introduced at version {since}")
            entries.append((since, fn))
            entries.sort(key=lambda e: e[0])
        return fn
    return deco


@cache
def since_version(op_type: str, opset: int) -> int:
    """The since_version of the default-domain schema of `op_type` in force at `opset` (`opset` without one)."""
    try:
        return onnx.defs.get_schema(op_type, opset).since_version
    except onnx.defs.SchemaError:
        return opset


def lookup(op_type: str, opset: int) -> Handler | None:
    """The handler for `op_type` at the model's `opset`, or None when graphport has none for that version."""
    version = since_version(op_type, opset)
    found = None
    for since, fn in _HANDLERS.get(op_type, []):
        if since <= version:
            found = fn
    return found


def supported_ops() -> list[str]:
    return sorted(_HANDLERS)
