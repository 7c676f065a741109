"""Argument types and the options every command shares.

Kept free of numpy, TensorFlow and the runtime modules: the parser is built for `--help` and for every usage
error, and those must answer at once (TensorFlow alone takes seconds to import).
"""

from __future__ import annotations

import argparse

# The names in graphport.runtime.backends.BACKENDS, repeated here so that building the parser imports no numpy;
# tests/test_cli_parser.py checks that the two agree, and `--backends` validates against the real tuple.
BACKEND_NAMES = ("capi", "session", "tf2", "onnxruntime", "essentia")


def batch_sizes(text: str) -> tuple[int, ...]:
    """`1,3,64` -> (1, 3, 64); anything else is a usage error naming the value."""
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from e
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got '{text}'")
    return sizes


def named_sizes(text: str) -> tuple[str, tuple[int, ...]]:
    """`sequence=512` or `samples=16000,24000` -> (name, sizes); sizes are integers >= 1."""
    name, sep, value = text.partition("=")
    try:
        sizes = batch_sizes(value) if sep and name else ()
    except argparse.ArgumentTypeError:
        sizes = ()
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE with a dim name and an integer >= 1, got '{text}'")
    return name, sizes


def batch_or_auto(text: str) -> int | str:
    """'auto' or an integer >= 1."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"batch must be >= 1, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = batch_or_auto(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("expected an integer >= 1")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (seconds, GiB)."""
    return _number(text, 0.0, strict=True)


def non_negative_float(text: str) -> float:
    """A number >= 0 (tolerances: 0 still leaves the float-order floor)."""
    return _number(text, 0.0, strict=False)


def _number(text: str, bound: float, *, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (value > bound if strict else value >= bound):  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number {'>' if strict else '>='} {bound:g}, got '{text}'")
    return value


def backend_list(text: str) -> tuple[str, ...]:
    """Comma-separated backend names, each one of graphport.runtime.backends.BACKENDS, or `capi@VERSION` for the
    C API of another TF host (graphport.runtime.tf_hosts.TF_HOSTS).

    An unknown name must stop the command: bench would otherwise skip it silently and print an empty table.
    """
    from graphport.runtime.backends import BACKENDS
    from graphport.runtime.tf_hosts import TF_HOSTS

    names = tuple(x.strip() for x in text.split(",") if x.strip())
    hosts = {f"capi@{v}" for v in TF_HOSTS}
    unknown = [n for n in names if n not in BACKENDS and n not in hosts]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(map(repr, unknown)) or '(none given)'}; "
                                         f"valid backends: {', '.join([*BACKENDS, *sorted(hosts)])}")
    return names


def global_options(*, in_command: bool) -> argparse.ArgumentParser:
    """--traceback and --verbose, accepted before the command and after it.

    In a command's parser the defaults are SUPPRESS, so an option given before the command is not reset by it.
    """
    p = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if in_command else False
    p.add_argument("--traceback", action="store_true", default=default,
                   help="show the Python traceback of an internal error instead of one paragraph")
    p.add_argument("--verbose", action="store_true", default=default,
                   help="let TensorFlow's, absl's and oneDNN's own log lines through to stderr (hidden by default)")
    return p


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the descriptions' line breaks; show an option's default after its help when it has a real one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.option_strings and "%(default)" not in text and default is not argparse.SUPPRESS \
                and default is not None and default is not False and default != []:
            text += " (default: %(default)s)"
        return text


def command(sub: argparse._SubParsersAction, name: str, summary: str, description: str | None = None
            ) -> argparse.ArgumentParser:
    """A command's parser, with the global options and the shared help format."""
    return sub.add_parser(name, help=summary, description=description or summary, formatter_class=_Formatter,
                          parents=[global_options(in_command=True)])


def thread_budget(text: str) -> tuple[int, int]:
    """`MODEL[,FRONTEND]` -> (model, frontend) thread counts; FRONTEND defaults to 1."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if not 1 <= len(sizes) <= 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected MODEL[,FRONTEND] thread counts >= 1, e.g. 2 or 2,1; got '{text}'")
    return sizes[0], sizes[1] if len(sizes) == 2 else 1


def add_precision(parser: argparse.ArgumentParser) -> None:
    """`--precision`, for the commands whose TF sessions graphport opens (runtime/precision.py has the rules)."""
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="what the TF sessions compute in: fp32 (equal to ONNX Runtime), bf16 (oneDNN's bfloat16 "
                             "rewrite; needs a CPU with AVX-512 BF16 or AMX and oneDNN on), or auto (bf16 where it "
                             "runs and the model's conversion found it within tolerance, else fp32)")
