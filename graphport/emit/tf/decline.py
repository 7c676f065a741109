"""The one exception a handler raises to refuse a node; its own module so that context and registry share it
without importing each other."""


class Decline(Exception):
    """Raised by a handler for an attribute value or input form it cannot convert exactly."""
