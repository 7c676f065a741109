"""`graphport convert MODEL.onnx -o OUTDIR`: convert, verify against ONNX Runtime, write the artifacts atomically."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from graphport.cli._args import batch_sizes, command, named_sizes, non_negative_float, positive_int


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `convert` options."""
    c = command(sub, "convert", "convert an ONNX model into a flat TF graph, SavedModel and metadata")
    c.add_argument("model", help="path to the .onnx file, or a torch.export archive (.pt2); never modified")
    c.add_argument("-o", "--out", required=True, help="output directory")
    c.add_argument("--batch-sizes", type=batch_sizes, default="1,3,64", metavar="N,N,...", help="verification batch sizes")
    c.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")
    c.add_argument("--force", action="store_true", help="replace an existing output directory")
    c.add_argument("--keep-failed", action="store_true", help="on a verification failure, write OUTDIR.failed/")
    c.add_argument("--fix-input", action="append", default=[], metavar="NAME=VALUE",
                   help="specialise an input to a constant (JSON value, e.g. sr=16000); repeatable")
    c.add_argument("--fix-dim", action="append", default=[], type=named_sizes, metavar="NAME=SIZE",
                   help="pin a symbolic dim (its ONNX dim_param, e.g. sequence=512); other dims stay dynamic; "
                        "repeatable")
    c.add_argument("--verify-dim", action="append", default=[], type=named_sizes, metavar="NAME=SIZE[,SIZE]",
                   help="verify a symbolic dim at these sizes instead of sizes probed with ONNX Runtime; repeatable")
    c.add_argument("--atol", type=non_negative_float, default=1e-4, metavar="X",
                   help="absolute tolerance per element against ONNX Runtime (a float-order floor is added)")
    c.add_argument("--rtol", type=non_negative_float, default=1e-3, metavar="X",
                   help="relative tolerance per element against ONNX Runtime")
    c.add_argument("--tflite", action="store_true",
                   help="also write model.tflite (TFLite builtins, dynamic batch kept), verified in LiteRT")
    e = c.add_argument_group("Essentia packaging (model.essentia.json, docs/model_json.md)")
    e.add_argument("--essentia-json", metavar="PATH", help="also write the Essentia metadata JSON here")
    e.add_argument("--name", help="the model's name in it (default: the ONNX file's stem)")
    e.add_argument("--labels", metavar="FILE", help="class names: one per line, or a JSON list")
    e.add_argument("--sample-rate", type=positive_int, metavar="HZ", help="inference.sample_rate")
    e.add_argument("--algorithm", help="inference.algorithm, e.g. TensorflowPredictEffnetDiscogs")
    e.add_argument("--output-purpose", action="append", default=[], metavar="OUTPUT=PURPOSE",
                   help="predictions or embeddings (default: derived from the classes and the output's op); "
                        "repeatable")
    return c


def run(args: argparse.Namespace, console: Console) -> int:
    """0 converted and verified, 1 verification failed (OUTDIR left as it was); user errors raise."""
    from graphport.core.errors import OutputExists

    try:
        report = _convert(args.model, args.out, batch_sizes=args.batch_sizes, verify_outputs=not args.no_verify,
                          force=args.force, keep_failed=args.keep_failed, atol=args.atol, rtol=args.rtol,
                          fix_inputs=fixed_inputs(args.fix_input), fix_dims=_one_size(args.fix_dim),
                          verify_dims=dict(args.verify_dim), packaging=packaging(args), tflite=args.tflite)
    except OutputExists:  # the converter's message also names the Python argument; here only the option counts
        raise OutputExists(f"output directory '{args.out}' already exists; replace it with --force.") from None
    print_report(console, report)
    if not report.ok:
        where = f"; artifacts kept in {args.out.rstrip('/')}.failed/" if args.keep_failed else ""
        console.print(f"[bold red]verification failed[/]: '{args.out}' was left as it was{where}", highlight=False)
        return 1
    return 0


def _convert(model: str, out: str, **kwargs):
    """graphport.convert for an .onnx; for a .pt2, the archive's module through graphport.from_torch, named after
    the archive in the Essentia JSON."""
    if not model.lower().endswith(".pt2"):
        from graphport.conversion.pipeline import convert

        return convert(model, out, **kwargs)
    from pathlib import Path

    from graphport.conversion.from_torch import from_torch, load_pt2

    if kwargs["packaging"].name is None:
        kwargs["packaging"].name = Path(model).stem
    module, examples, dynamic = load_pt2(model)
    return from_torch(module, examples, out, dynamic, **kwargs)


def packaging(args: argparse.Namespace):
    """The Essentia packaging options -> essentia_metadata.Packaging; a malformed OUTPUT=PURPOSE is a user error."""
    from pathlib import Path

    from graphport.core.errors import GraphportError
    from graphport.core.essentia_metadata import Packaging, read_classes

    purposes = {}
    for item in args.output_purpose:
        name, sep, purpose = item.partition("=")
        if not (sep and name and purpose):
            raise GraphportError(f"--output-purpose '{item}': write OUTPUT=PURPOSE, e.g. output_0=embeddings.")
        purposes[name] = purpose
    return Packaging(args.name, read_classes(args.labels) if args.labels else None, args.sample_rate, args.algorithm,
                     purposes, Path(args.essentia_json) if args.essentia_json else None)


def _one_size(items: list[tuple[str, tuple[int, ...]]]) -> dict[str, int]:
    """--fix-dim pins one size per dim."""
    from graphport.core.errors import GraphportError

    for name, sizes in items:
        if len(sizes) != 1:
            raise GraphportError(f"--fix-dim {name}: give one size, not {len(sizes)}.")
    return {name: sizes[0] for name, sizes in items}


def fixed_inputs(items: list[str]) -> dict:
    """`--fix-input NAME=VALUE` items -> {name: numpy array}; a malformed item is a user error."""
    import json

    import numpy as np

    from graphport.core.errors import GraphportError

    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError("expected NAME=VALUE")
            fixed[name] = np.array(json.loads(value))
        except ValueError as e:
            raise GraphportError(f"--fix-input '{item}': {e}; write NAME=VALUE with a JSON value, e.g. sr=16000.")
    return fixed


def print_report(console: Console, report) -> None:
    """Conversion time, op census, host names, verification table, failures and warnings (also for `example`)."""
    meta = report.metadata
    console.print(f"[bold]converted in {report.seconds:.2f} s[/] -> {report.out_dir or '(not written)'}")
    ops = Table(title="TF graph", show_edge=False)
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for name, count in report.tf_ops.items():
        ops.add_row(name, str(count))
    ops.add_row("[bold]total nodes[/]", f"[bold]{report.tf_nodes}[/]")
    ops.add_row("[bold]Transpose[/]", f"[bold]{report.transposes}[/]")
    console.print(ops)
    io = Table(title="names for hosts", show_edge=False)
    for col in ("", "ONNX", ".pb tensor", "SavedModel tensor"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for e in meta[kind]:
            io.add_row(kind[:-1], e["name"], e["pb"]["tensor"], e["saved_model"]["tensor"])
    console.print(io)
    if report.verification is None:
        console.print("[yellow]verification skipped (--no-verify)[/]")
        return
    v = report.verification
    t = Table(title=f"verification against ONNX Runtime (atol {v.atol:g}, rtol {v.rtol:g}, plus the float-order "
                    "floor per output)", show_edge=False)
    sized = any(c.dims for c in v.checks)
    for col in ("oneDNN / run", "batch", *(("dims",) if sized else ()), "output", "max abs", "max rel", ""):
        t.add_column(col)
    for c in v.checks + v.bf16.checks:
        dims = (" ".join(f"{k}={n}" for k, n in c.dims.items()),) if sized else ()
        verdict = ("[green]ok[/]" if c.ok else "[red]FAIL[/]") if c.onednn != "bf16" else \
            ("[green]ok[/]" if c.ok else "[yellow]over[/]")
        t.add_row(c.onednn, str(c.batch), *dims, c.output, f"{c.max_abs:.2e}", f"{c.max_rel:.2e}", verdict)
    console.print(t)
    console.print(_bf16_line(v.bf16), highlight=False)
    for sizes, reasons in zip(meta.get("verified_dim_sizes") or [], meta.get("verified_dim_reasons") or []):
        for d, why in reasons.items():
            console.print(f"verified at {d}={sizes[d]}: {escape(why)}", highlight=False)
    console.print(f"batch invariance: max |row of batch N - batch 1| = {v.batch_invariance:.2e} "
                  + ("[green]ok[/]" if v.batch_invariance_ok else "[red]FAIL[/]"))
    for f in v.failures:
        console.print(f"[bold red]oneDNN {f.onednn}:[/] {escape(f.message)}", highlight=False)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)


def _bf16_line(bf16) -> str:
    """What the bf16 rows mean: they are reported, not required, and decide what `--precision auto` picks."""
    if bf16.ok is None:
        return f"bf16 not measured: {escape(bf16.reason or '')}."
    bound = f"{bf16.factor:g} bf16 epsilons of each output's scale"
    if bf16.ok:
        return f"bf16 (oneDNN's rewrite, reported only): within {bound}; --precision bf16 or auto may be used."
    why = f" ({escape(bf16.reason)})" if bf16.reason else ""
    return f"[yellow]bf16 (reported only) moves outputs beyond {bound}{why}: --precision auto keeps fp32.[/]"
