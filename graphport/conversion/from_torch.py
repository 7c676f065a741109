"""`graphport.from_torch(module, example_inputs, out, dynamic=...)` and `graphport convert model.pt2`.

Why: a user with a PyTorch model should get a verified `.pb`, SavedModel and Essentia JSON without learning ONNX.
The module is exported (torch_export.py), converted and verified against ONNX Runtime as any ONNX file is, and then
checked against the module itself on fresh inputs at several sizes of each dynamic dim: an export that traced one
path, or baked a size in, agrees with ORT (both run the export) but not with PyTorch. The output folder is written
only when both checks pass.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from graphport.conversion.pipeline import ConversionReport, convert
from graphport.conversion.torch_export import Dynamic, Exported, export
from graphport.conversion.verify import SCALE_RTOL, OutputCheck, compare
from graphport.core import model_json
from graphport.core.atomic import output_lock, replace_dir, staging_dir
from graphport.core.errors import GraphportError, OutputExists, require_extra


def from_torch(module, example_inputs, out: str | os.PathLike, dynamic: Dynamic | None = None, *,
               opset: int | None = None, force: bool = False, **convert_options) -> ConversionReport:
    """Export `module` on `example_inputs` (a tensor or a tuple) with the dims of `dynamic` kept dynamic, convert and
    verify it against ORT and against `module`; `dynamic` maps a dim name to its axis in every input
    (`{"batch": 0, "time": 2}`) or to {input name: axis}. `convert_options` are `graphport.convert`'s."""
    require_extra("torch", "graphport.from_torch")
    import torch

    examples = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not all(isinstance(x, torch.Tensor) for x in examples):
        raise GraphportError("from_torch takes example inputs as tensors (one, or a tuple of them).")
    target = Path(out).absolute()
    keep_failed = convert_options.get("keep_failed", False)
    with output_lock(target), tempfile.TemporaryDirectory(prefix="graphport-torch-") as scratch:
        if target.exists() and not force:
            raise OutputExists(f"output directory '{target}' already exists; pass force=True to replace it.")
        onnx_path = Path(scratch) / f"{type(module).__name__}.onnx"
        exported = export(module, examples, onnx_path, dynamic, opset)
        with staging_dir(target) as tmp:
            report = convert(onnx_path, tmp / "out", **convert_options)
            report.warnings[:0] = exported.notes
            written = report.out_dir  # None where ORT's verification failed (then kept in out.failed, if asked)
            if written is not None:
                if report.verification is not None:
                    report.verification.checks += check_against_module(module, examples, exported, written, report)
                _note_source(written, exported, report)
            if not report.ok:
                kept = written or tmp / "out.failed"
                if keep_failed and kept.exists():
                    replace_dir(kept, target.with_name(target.name + ".failed"))
                report.out_dir = None
                return report
            replace_dir(written, target)
            report.out_dir = target
    return report


def check_against_module(module, examples: tuple, exported: Exported, folder: Path,
                         report: ConversionReport) -> list[OutputCheck]:
    """The converted .pb against `module` itself, on fresh inputs at the example's sizes, at each size set the
    converter verified, and at batches 1 and 3 (the dims on axis 0). A size the module itself refuses (a
    torch.export archive guards its dims against 0 and 1, say) is noted in the report's warnings and skipped."""
    import torch

    from graphport.runtime.isolated import IsolatedGraph

    meta = model_json.read(folder)
    example_sizes = {d: int(examples[exported.input_names.index(n)].shape[a])
                     for n, dims in exported.axes.items() for a, d in dims.items()}
    leading = {d for dims in exported.axes.values() for a, d in dims.items() if a == 0}
    drawn = [example_sizes, *({**example_sizes, **s} for s in meta.get("verified_dim_sizes") or []),
             *({**example_sizes, **dict.fromkeys(leading, b)} for b in (1, 3) if leading)]
    cases = list({tuple(sorted(s.items())): s for s in drawn}.values())  # each size set once, in order
    graph = IsolatedGraph((folder / "model.pb").read_bytes(), {e["name"]: e["pb"]["op"] for e in meta["inputs"]},
                          {e["name"]: e["pb"]["op"] for e in meta["outputs"]})
    floors = report.verification.noise_floor
    checks = []
    try:
        for i, sizes in enumerate(cases):
            feeds = _fresh_inputs(examples, exported, sizes, seed=100 + i)
            try:
                with torch.no_grad():
                    want = _flatten(module(*(torch.from_numpy(f) for f in feeds)))
            except Exception as e:  # noqa: BLE001  the module's own code (or an archive's guards) refused the size
                # not a verdict on the conversion (ORT and TF run it); the example's sizes always run
                report.warnings.append(f"the PyTorch module refuses inputs with {sizes} (the graph and ONNX Runtime "
                                       f"accept them), so it was not compared there: "
                                       f"{str(e).strip().splitlines()[0][:200]}")
                continue
            got = graph.run(dict(zip(exported.input_names, feeds)))
            for (name, value), ref in zip(got.items(), want):
                ref = ref.detach().numpy()
                floor = max(floors.get(name, 0.0), SCALE_RTOL * float(np.abs(ref).max(initial=0.0)))
                max_abs, max_rel, ok = compare(ref, value, report.verification.atol, report.verification.rtol, floor)
                batch = next((sizes[d] for d in leading), int(ref.shape[0]) if ref.ndim else 1)
                checks.append(OutputCheck(batch, name, "vs PyTorch", max_abs, max_rel, ok, dict(sizes)))
    finally:
        graph.close()
    return checks


def _fresh_inputs(examples: tuple, exported: Exported, sizes: dict[str, int], seed: int) -> list[np.ndarray]:
    """Inputs at `sizes`: random normal floats, and integer inputs resized from the example (wrapping around)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for name, x in zip(exported.input_names, examples):
        shape = list(x.shape)
        for axis, dim in exported.axes[name].items():
            shape[axis] = sizes[dim]
        base = x.detach().cpu().numpy()
        if base.dtype.kind == "f":
            feeds.append(rng.standard_normal(shape).astype(base.dtype))
        else:
            feeds.append(np.resize(base, shape).astype(base.dtype))
    return feeds


def _flatten(result) -> list:
    if isinstance(result, (tuple, list)):
        return [t for r in result for t in _flatten(r)]
    if isinstance(result, dict):
        return [t for r in result.values() for t in _flatten(r)]
    return [result]


def _note_source(folder: Path, exported: Exported, report: ConversionReport) -> None:
    """model.json records that the ONNX came from PyTorch, through which exporter, and the verification with the
    rows against the module, which ran after convert wrote it."""
    meta = model_json.read(folder)
    meta["source"]["torch"] = {"exporter": exported.exporter,
                               "dynamic": {n: {str(a): d for a, d in dims.items()} for n, dims in exported.axes.items()}}
    if report.verification is not None:
        meta["verification"] = report.verification.to_json()
    meta["warnings"] = report.warnings
    model_json.rewrite(folder, meta)


def load_pt2(path: str | os.PathLike) -> tuple[object, tuple, Dynamic]:
    """A `torch.export` archive -> (module, example inputs, dynamic dims): axis 0's symbol is 'batch', any other
    symbolic dim 'INPUT_dimAXIS' (the archive keeps no dim names), one name per symbol."""
    require_extra("torch", "graphport convert model.pt2")
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001  a damaged zip, a foreign file, a newer torch's archive
        raise GraphportError(f"'{path}' is not a torch.export archive torch {torch.__version__} can load: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}.") from None
    args = (program.example_inputs or ((), {}))[0]
    if not args:
        raise GraphportError(f"'{path}' holds no example inputs; save it from torch.export.export(module, args, ...) "
                             "so that the archive carries them.")
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"
                    and n.name in program.graph_signature.user_inputs]
    names: dict[str, str] = {}
    dynamic: dict[str, dict[str, int]] = {}
    for node in placeholders[:len(args)]:
        for axis, size in enumerate(node.meta["val"].shape):
            if isinstance(size, torch.SymInt):
                symbol = str(size)
                name = names.setdefault(symbol, "batch" if axis == 0 and "batch" not in names.values()
                                        else f"{node.name}_dim{axis}")
                dynamic.setdefault(name, {})[node.name] = axis
    return program.module(), tuple(args), dynamic
