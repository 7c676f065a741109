"""Render doctor's findings with rich: one screen, the hazard and its cost first, the census last."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from graphport.doctor.analyze import Analysis
from graphport.doctor.fix import FixResult
from graphport.doctor.risk import Risk


def print_analysis(console: Console, path: str, a: Analysis, risk: Risk) -> None:
    """The diagnosis: functions, hazard chains, control flow, layout, variables, predicted risk."""
    console.print(f"[bold]graphport doctor[/] {path} ({a.kind.replace('_', ' ')}, "
                  f"{'dynamic' if a.dynamic_batch else 'fixed'} batch)")
    depth = max(a.functions.values(), default=0)
    console.print(f"functions: {len(a.functions)} reachable, call nesting depth {depth}; "
                  f"{a.weight_args} function arguments are fed from constants/variables (weights as arguments)")
    chains = a.chains()
    if chains:
        t = Table(title="load hazards: shape inputs evaluated inside functions", title_justify="left")
        t.add_column("chain")
        t.add_column("places", justify="right")
        t.add_column("predicted runs each (old TF)", justify="right")
        for chain, count in chains.most_common(12):
            runs = risk.chain_runs.get(chain)
            t.add_row(chain, str(count), f"{runs:,}" if runs else "re-inference trigger")
        console.print(t)
    if a.control_flow:
        ops = sorted({op for _, _, op in a.control_flow})
        hidden = "; their output shapes are unknown, so every shape after them is too" if a.cond_hides_shapes else ""
        console.print(f"control flow: {len(a.control_flow)} {'/'.join(ops)} (tf.cond, e.g. onnx-tf's Pad) "
                      f"re-inferred with the body{hidden}")
    console.print(f"layout: {a.transposes} Transposes ({a.cancelling_transposes} in back-to-back pairs); "
                  f"{a.convs_after_transpose} of {a.convs} convs read a Transpose; {a.grouped_splits} grouped convs "
                  f"split per group; {a.trivial_splits} one-way Splits before convs")
    if a.variables:
        console.print(f"variables: {len(a.variables)} read-only variables could be constants")
    colour = {"high": "bold red", "medium": "yellow", "low": "green"}
    console.print(f"[{colour[risk.old_level]}]old TF (<= 2.12, Essentia, C API hosts): {risk.old_level}[/] "
                  f"(predicted load ≈ {risk.old_seconds:,.0f} s): {risk.old_reason}")
    console.print(f"[{colour[risk.new_level]}]new TF (>= 2.13): {risk.new_level}[/]: {risk.new_reason}")
    census = ", ".join(f"{op} {n}" for op, n in a.census.most_common(14))
    console.print(f"ops: {sum(a.census.values())} nodes: {census}", highlight=False)


def print_fix(console: Console, r: FixResult) -> None:
    """Before/after census and the verification figures."""
    t = Table(title="--fix: before → after", title_justify="left")
    t.add_column("")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    rows = ["nodes", "PartitionedCall", "StatefulPartitionedCall", "StatelessIf", "If", "Transpose", "Range",
            "SplitV", "SparseToDense", "Shape", "Conv2D"]
    for row in rows:
        b = sum(r.before.values()) if row == "nodes" else r.before.get(row, 0)
        a = sum(r.after.values()) if row == "nodes" else r.after.get(row, 0)
        if b or a:
            t.add_row(row, str(b), str(a))
    console.print(t)
    errors = ", ".join(f"B={b}: {e:.1e}" for b, e in r.max_abs.items())
    console.print(f"verified against the original: max abs {errors}; {r.seconds:.1f} s")
    if r.out_dir is not None:
        console.print(f"wrote {r.out_dir}/model.pb, saved_model/, model.json")
