"""The TF emitters' table: `@op("Softmax", since=13)` registers a handler in graphport's one op registry
(ir/op_registry.py, keyed by (domain, op_type, since_version) and resolved through onnx.defs).

A handler implements the behaviour of the schema version it names; a model at opset N gets the handler of the
schema in force at N. Adding an op, or a version of one, is adding one function (docs/adding-an-op.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from graphport.emit.tf.decline import Decline
from graphport.ir.op_registry import DEFAULT_DOMAIN, OpRegistry, RegistryError, since_version

if TYPE_CHECKING:
    from graphport.emit.tf.context import EmitContext
    from graphport.ir.graph import Node

__all__ = ["EMITTERS", "Decline", "Handler", "RegistryError", "lookup", "op", "since_version", "supported_ops"]

Handler = Callable[["EmitContext", "Node"], None]
EMITTERS: OpRegistry[Handler] = OpRegistry("handler")


def op(*op_types: str, since: int = 1, domain: str = DEFAULT_DOMAIN) -> Callable[[Handler], Handler]:
    """Register a handler for `op_types` from schema version `since` on, until a later registration takes over."""
    return EMITTERS.register(*op_types, since=since, domain=domain)


def lookup(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN) -> Handler | None:
    """The handler for `op_type` at its domain's opset, or None when graphport has none for that version."""
    return EMITTERS.lookup(op_type, opset, domain)


def supported_ops() -> list[str]:
    return EMITTERS.op_types()
