"""Op registry: `(op_type, since_version) -> handler`, as in onnx2torch. Adding an op means adding one function."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphport.emit.tf.context import EmitContext
    from graphport.ir.graph import Node

Handler = Callable[["EmitContext", "Node"], None]
_HANDLERS: dict[str, list[tuple[int, Handler]]] = {}


def op(*op_types: str, since: int = 1) -> Callable[[Handler], Handler]:
    """Register `fn` for `op_types` from opset `since` on (until a later registration takes over)."""
    def deco(fn: Handler) -> Handler:
        for t in op_types:
            _HANDLERS.setdefault(t, []).append((since, fn))
            _HANDLERS[t].sort(key=lambda e: e[0])
        return fn
    return deco


def lookup(op_type: str, opset: int) -> Handler | None:
    found = None
    for since, fn in _HANDLERS.get(op_type, []):
        if since <= opset:
            found = fn
    return found


def supported_ops() -> list[str]:
    return sorted(_HANDLERS)


class Decline(Exception):
    """Raised by a handler for an attribute value or input form it cannot convert exactly."""
