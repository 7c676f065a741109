"""PyTorch in: an `nn.Module` (or a `torch.export` archive) exported to ONNX with the dims named dynamic kept dynamic.

Why: users arrive with PyTorch models, and `torch.onnx.export`'s dynamic axes are where conversions go wrong. This
module does the export for them and checks what came out, from the exported graph itself:
- dynamo first (`torch.export`), every named dim given as `Dim.DYNAMIC`: a named `Dim` that the model narrows
  (a conv needs >= 7 samples) made torch 2.13's exporter fall back to a strategy that fixed the dim silently, where
  DYNAMIC keeps it symbolic. Its symbol (`s53`) is renamed to the user's name.
- the legacy TorchScript exporter where dynamo fails; it traces one path through Python control flow, so a
  TracerWarning about a tensor turned into a Python bool is refused as data-dependent control flow, naming the
  submodule that ran it (found with forward hooks).
- a dim named dynamic that comes out fixed in the ONNX graph's inputs is refused by name.
torch is imported only here, and only when this path is used (`graphport[torch]`).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from graphport.core.errors import GraphportError

Dynamic = dict[str, int | dict[str, int]]  # dim name -> axis in every input, or {input name: axis}


@dataclass
class Exported:
    """The ONNX file written, which exporter wrote it, and the dims per input axis."""

    path: Path
    exporter: str  # "dynamo" | "legacy"
    input_names: list[str]
    axes: dict[str, dict[int, str]]  # input name -> {axis: dim name}
    notes: list[str] = field(default_factory=list)


class TorchExportError(GraphportError):
    """The module cannot be exported as asked: untraceable, data-dependent control flow, or a dim it specialises."""


def input_names(module, n_inputs: int) -> list[str]:
    """The forward()'s parameter names for the positional inputs (`x`, `mel`, ...), else input_0, input_1, ..."""
    forward = getattr(module, "forward", module)
    try:
        params = [p.name for p in inspect.signature(forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    except (TypeError, ValueError):
        params = []
    return params[:n_inputs] if len(params) >= n_inputs else [f"input_{i}" for i in range(n_inputs)]


def dynamic_axes(dynamic: Dynamic | None, names: list[str], ranks: list[int]) -> dict[str, dict[int, str]]:
    """{input: {axis: dim}} from `dynamic`; an axis that does not exist, or an unknown input, is a user error."""
    axes: dict[str, dict[int, str]] = {n: {} for n in names}
    for dim, where in (dynamic or {}).items():
        if not re.fullmatch(r"[A-Za-z_]\w*", dim):
            raise GraphportError(f"dynamic dim name '{dim}' must be an identifier (letters, digits, _).")
        spots = {n: where for n in names} if isinstance(where, int) else dict(where)
        for name, axis in spots.items():
            if name not in axes:
                raise GraphportError(f"dynamic dim '{dim}' names input '{name}'; the module's inputs are {names}.")
            rank = ranks[names.index(name)]
            if not -rank <= axis < rank:
                raise GraphportError(f"dynamic dim '{dim}': input '{name}' has {rank} axes, so axis {axis} does "
                                     "not exist.")
            axes[name][axis % rank] = dim
    return axes


class ModuleStack:
    """The submodule running now, from forward hooks: where an export failed or a trace went data-dependent."""

    def __init__(self, module):
        self.stack: list[str] = []
        self.handles = []
        for path, sub in module.named_modules():  # both hooks return None: a forward hook's value replaces the output
            self.handles.append(sub.register_forward_pre_hook(lambda m, a, p=path: self.stack.append(p or "<root>")))
            self.handles.append(sub.register_forward_hook(lambda m, a, o: self._leave()))

    def _leave(self) -> None:
        self.stack.pop()

    def where(self) -> str:
        return self.stack[-1] if self.stack else "<root>"

    def __enter__(self) -> ModuleStack:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


def export(module, example_inputs: tuple, path: Path, dynamic: Dynamic | None, opset: int | None = None) -> Exported:
    """Export `module` to `path` (dynamo first, legacy where dynamo fails) and check that the dynamic dims stayed."""
    names = input_names(module, len(example_inputs))
    axes = dynamic_axes(dynamic, names, [t.dim() for t in example_inputs])
    with contextlib.suppress(NotImplementedError):  # a torch.export archive's module is inference-only already
        module = module.eval()  # BatchNorm and Dropout as in inference, which the graph runs
    try:
        _dynamo(module, example_inputs, path, names, axes, opset)
        exporter, notes = "dynamo", []
    except Exception as e:  # noqa: BLE001  torch's exporters raise anything from RuntimeError to AssertionError
        reason = _summary(e)
        _refuse_specialised(e, axes)  # the legacy exporter would keep the dim's name on a graph that needs one size
        _legacy(module, example_inputs, path, names, axes, opset, reason)
        note = f"torch.export could not export the module ({reason}); the legacy TorchScript exporter did"
        exporter, notes = "legacy", [note]
    _rename_and_check(path, axes, exporter)
    return Exported(path, exporter, names, axes, notes)


def _dynamo(module, example_inputs: tuple, path: Path, names: list[str], axes: dict, opset: int | None) -> None:
    import torch

    shapes = tuple({a: torch.export.Dim.DYNAMIC for a in axes[n]} or None for n in names)
    kw = {"opset_version": opset} if opset else {}
    with warnings.catch_warnings(), _quiet_torch():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example_inputs, str(path), dynamo=True, input_names=names,
                          dynamic_shapes=shapes, verbose=False, **kw)


def _legacy(module, example_inputs: tuple, path: Path, names: list[str], axes: dict, opset: int | None,
            dynamo_reason: str) -> None:
    import torch

    bools = []

    def record(message, category, *rest):
        if issubclass(category, torch.jit.TracerWarning) and "Python boolean" in str(message):
            bools.append(stack.where())

    dynamic = {n: dict(axes[n]) for n in names if axes[n]}
    with ModuleStack(module) as stack, warnings.catch_warnings(), _quiet_torch():
        warnings.simplefilter("always")
        warnings.showwarning = record
        try:
            torch.onnx.export(module, example_inputs, str(path), dynamo=False, input_names=names,
                              dynamic_axes=dynamic, opset_version=opset or 17)
        except Exception as e:  # noqa: BLE001
            raise TorchExportError(f"the module cannot be exported to ONNX: torch.export says {dynamo_reason}; the "
                                   f"legacy exporter fails in '{stack.where()}': {_summary(e)}.") from None
    if bools:
        raise TorchExportError(f"the module has data-dependent control flow in '{bools[0]}' (a tensor's value decides "
                               f"a Python branch, so a trace would keep one path only); torch.export says "
                               f"{dynamo_reason}. Rewrite the branch with torch.where or torch.cond.")


def _refuse_specialised(error: Exception, axes: dict[str, dict[int, str]]) -> None:
    """torch.export's 'inferred a static shape of N for dimension inputs['x'].shape[k]', as the user's dim names."""
    found = re.findall(r"static shape of (\d+) for dimension inputs\['(\w+)'\]\.shape\[(\d+)\]", _plain(error))
    named = [f"'{axes[n][int(a)]}' (input '{n}' axis {a} must be {size})" for size, n, a in found
             if int(a) in axes.get(n, {})]
    if named:
        raise _specialised(named, "torch.export")


def _rename_and_check(path: Path, axes: dict[str, dict[int, str]], exporter: str) -> None:
    """Give each dynamic input axis the user's name throughout the graph, and refuse one that came out fixed."""
    model = onnx.load(str(path), load_external_data=False)
    renames, fixed = {}, []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, name in axes.get(value.name, {}).items():
            d = dims[axis]
            if d.HasField("dim_value"):
                fixed.append(f"'{name}' (input '{value.name}' axis {axis} is fixed at {d.dim_value})")
            elif d.dim_param and d.dim_param != name:
                renames[d.dim_param] = name
    if fixed:
        raise _specialised(fixed, f"the {exporter} export")
    if renames:
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, renames)) + r")\b")
        values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
        for v in values:
            for d in v.type.tensor_type.shape.dim:
                if d.dim_param:
                    d.dim_param = pattern.sub(lambda m: renames[m.group(1)], d.dim_param)
        onnx.save(model, str(path))


def _specialised(dims: list[str], found_by: str) -> TorchExportError:
    return TorchExportError(f"the module specialises dynamic dim {', '.join(dims)} ({found_by} made that size a "
                            "constant: the module's code fixes it, by a reshape to a literal size or a shape read "
                            "into Python arithmetic). Make the size follow the input, or leave the dim static.")


def _plain(e: BaseException) -> str:
    """An exporter's message without its terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(e))


def _summary(e: BaseException) -> str:
    """One line of what a torch exporter said: its 'Exception summary' line when there is one."""
    text = _plain(e)
    found = re.search(r"## Exception summary\s+(.+)", text)
    line = (found.group(1) if found else (text.strip().splitlines() or [type(e).__name__])[0]).strip()
    return line[:400]


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch's exporters print progress and whole graphs to stdout and the log; a CLI prints one paragraph."""
    import io
    import logging

    loggers = [logging.getLogger(n) for n in ("torch", "torch.export", "torch._dynamo", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
