"""Errors that reach the user as one clear paragraph (CLI exit code 2), never as a traceback."""


class GraphportError(Exception):
    """A user-facing error: bad input, unsupported model, refused output path."""

    exit_code = 2


class InvalidModel(GraphportError):
    """The file is not a loadable, valid ONNX model."""


class UnsupportedModel(GraphportError):
    """The model is valid ONNX but uses ops or attribute values graphport cannot convert exactly.

    `items` lists (op_type, node_name, opset, reason) for every offending node, so the user sees all of them at once.
    """

    def __init__(self, items: list[tuple[str, str, int, str]]):
        self.items = items
        lines = [f"  - {op} (node '{name}', opset {opset}): {why}" for op, name, opset, why in items]
        super().__init__(f"graphport cannot convert {len(items)} node(s) of this model:\n" + "\n".join(lines))


class OutputExists(GraphportError):
    """The output directory exists and --force was not given."""
