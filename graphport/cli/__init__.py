"""The `graphport` command.

Each command is a module here (`convert_command`, `example_command`, ...) with `add_parser(sub)` and
`run(args, console) -> int`; `main` builds the parser from them and owns the error handling, so every command
ends the same way: a GraphportError prints one paragraph and exits with its code (2 user error, 1 verification or
run failure), Ctrl-C exits 130, and any other exception is an internal error in one paragraph, exit 1
(`--traceback` shows it). Building the parser imports neither TensorFlow nor numpy: `--help` and usage errors
answer at once, and a command imports what it runs when it runs.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from graphport.cli import (
    bench_command,
    convert_command,
    doctor_command,
    example_command,
    predict_command,
    profile_command,
)
from graphport.cli._args import global_options
from graphport.cli._quiet import quiet_stderr

COMMANDS = (convert_command, example_command, bench_command, profile_command, doctor_command, predict_command)
PIPE_WIDTH = 1000  # columns when stdout is not a terminal: tables and paragraphs are never cut or wrapped there


def _console() -> Console:
    """rich's console, except that piped output (no terminal, no COLUMNS) is not cut to 80 columns."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return Console()
    return Console(width=PIPE_WIDTH)


console = _console()


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each command's `run` is stored as the `run` default of its subparser."""
    parser = argparse.ArgumentParser(prog="graphport", parents=[global_options(in_command=False)],
                                     description="ONNX -> flat TensorFlow graphs with a dynamic batch that every "
                                     "TF C API host loads at once. Exit codes: 0 ok, 1 verification or run failure "
                                     "or internal error, 2 user error, 130 interrupted.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub).set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None, out: Console | None = None) -> int:
    """Run one command; returns its exit code (usage errors exit 2 from argparse, before anything is imported)."""
    args = build_parser().parse_args(argv)
    out = out or console
    if not args.verbose:
        # TF's own INFO and WARNING lines; workers inherit it and keep their ERROR lines for crash reports.
        # oneDNN is left alone: it is the host's choice, and verification runs both settings.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from graphport.core.errors import GraphportError

    with quiet_stderr(enabled=not args.verbose):
        try:
            return args.run(args, out)
        except GraphportError as e:
            out.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            return e.exit_code
        except KeyboardInterrupt:
            out.print("[red]interrupted; outputs are written atomically, so nothing half-written was left[/]")
            return 130
        except Exception as e:  # a bug of ours still gets one paragraph, and outputs stay whole
            if args.traceback:
                raise
            out.print(f"[bold red]internal error[/] in 'graphport {args.command}': {type(e).__name__}: "
                      f"{escape(str(e).rstrip('.'))}. Nothing half-written was left. This is a graphport bug: please "
                      "report it with the output of the same command run with --traceback.", highlight=False)
            return 1


def run() -> NoReturn:
    """The `graphport` executable: `main`, then exit without tearing TensorFlow's Python state down.

    Everything a command writes is complete when `main` returns (atomic writers, closed files), and the atexit
    handlers (worker shutdown, Ray's) still run; only the interpreter's module teardown is skipped, which with
    TensorFlow loaded took 0.4-0.6 s of a 4.3 s `graphport convert` (measured on the 2-core machine)."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
