"""`graphport doctor PATH [--fix -o OUT] [--measure]`: why a TF model loads slowly in old hosts, and a flat fix.

User errors are GraphportErrors (exit 2, one paragraph, input untouched); a --fix whose verification fails exits 1.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from graphport.cli._args import command, positive_float


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `doctor` options."""
    p = command(sub, "doctor", "diagnose (and --fix) a TF model that loads slowly in old TF hosts")
    p.add_argument("path", help="SavedModel directory or .pb (never modified)")
    p.add_argument("--fix", action="store_true", help="write a flat, verified, fast-loading model to -o")
    p.add_argument("-o", "--out", help="output directory for --fix")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--measure", action="store_true", help="time the real import via the C API (subprocess)")
    p.add_argument("--measure-timeout", type=positive_float, default=60.0, metavar="S",
                   help="seconds before a measured load is killed")
    p.add_argument("--tag", help="meta graph tags, comma-separated, when a SavedModel holds several")
    p.add_argument("--signature", help="signature to analyse/fix (default serving_default)")
    p.add_argument("--trust", action="store_true", help="go on although the model has file/code ops")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    """Diagnose, optionally measure and fix; 0 on success, 1 if --fix's verification failed (raised)."""
    from graphport.core.errors import DoctorError
    from graphport.doctor import diagnose, doctor_flags
    from graphport.runtime.tf_model import load, untrusted_ops
    from graphport.runtime.trust import refuse_untrusted

    if args.fix and not args.out:
        raise DoctorError("--fix needs -o OUT: the input is never modified.")
    model = load(args.path, tag=args.tag, signature=args.signature)
    risky = untrusted_ops(model)
    if (args.fix or args.measure) and not args.trust:
        refuse_untrusted(risky)
    from graphport.doctor.report import print_analysis, print_fix

    analysis, risk = diagnose(model)
    print_analysis(console, args.path, analysis, risk)
    if risky:
        console.print(f"[yellow]untrusted ops:[/] {', '.join(sorted({op for op, _ in risky}))}")
    if args.measure:
        from graphport.doctor.load_timing import measure

        for backend, seconds, note in measure(model, timeout=args.measure_timeout):
            console.print(f"measured load via {backend}: {seconds:.2f} s {note}".rstrip())
    if not args.fix:
        return 0
    from graphport.core.errors import OutputExists
    from graphport.doctor.fix import flatten, write

    result = flatten(model)
    try:
        write(result, args.out, force=args.force)
    except OutputExists:  # worded for the command line whatever the library says
        raise OutputExists(f"output directory '{args.out}' already exists; replace it with --force.") from None
    finally:
        print_fix(console, result)
    after = doctor_flags(result.out_dir / "model.pb") if result.out_dir else []
    if after:
        console.print(f"[yellow]the fixed model is still flagged:[/] {'; '.join(after)}")
    return 0
