"""The house's layout, read from the source: rooms (packages) import only the rooms below them, no circles, no loose
top-level modules, no module name used twice, and every module says what it is for.

Why: a layout drifts one convenient import at a time (issue #24 found a circle, five imports running back up and
14 loose modules). These checks read the import statements, so a new one that breaks a rule fails here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "graphport"
# Each room and the rooms it may import. `emit` is code generation: it never calls a pass.
ALLOWED = {
    "core": set(),
    "ir": {"core"},
    "passes": {"core", "ir"},
    "emit": {"core", "ir"},
    "runtime": {"core"},
    "audio": {"core"},
    "conversion": {"core", "ir", "passes", "emit", "runtime", "doctor"},
    "doctor": {"core", "runtime"},
    "tools": {"core", "runtime"},
    "predict": {"core", "runtime", "audio", "conversion"},
    "cli": {"core", "runtime", "conversion", "doctor", "tools", "predict", "audio"},
}
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("graphport"):
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("graphport")}
    return names


def _edges() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}


def _room(module: str) -> str:
    """The package a module lives in; "" for the package root and `__main__`, which may import any room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else ""


def test_only_init_and_main_at_the_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]
    assert set(ALLOWED) == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_no_module_name_repeats_across_packages():
    seen = defaultdict(list)
    for module in _modules():
        leaf = module.rsplit(".", 1)[-1]
        if leaf not in ("__main__",) and module.count(".") > 1:
            seen[leaf].append(module)
    rooms = {m.rsplit(".", 1)[-1] for m in _modules() if m.count(".") == 1}
    repeated = {k: v for k, v in seen.items() if len(v) > 1 or k in rooms}
    assert not repeated


def _upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, i) for m, targets in edges.items() for i in targets
                  if _room(m) and _room(i) and _room(i) != _room(m) and _room(i) not in ALLOWED[_room(m)])


def _circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target.startswith(module + ".") or module.startswith(target + "."):
                continue  # a package and its own modules
            if state.get(target) == 1:
                return [*trail[trail.index(target):], target]
            found = visit(target, [*trail, target]) if target not in state else None
            if found:
                return found
        state[module] = 2
        return None

    return next((c for m in sorted(edges) if m not in state and (c := visit(m, [m]))), None)


def test_rooms_import_only_the_rooms_below_them():
    assert not _upward(_edges())


def test_no_import_circles():
    assert _circle(_edges()) is None


def test_every_module_says_what_it_is_for():
    bare = sorted(m for m, p in _modules().items() if not ast.get_docstring(ast.parse(p.read_text())))
    assert not bare


def test_the_checks_catch_an_upward_import_and_a_circle():
    """Deliberately broken: an emitter importing a pass, and the batch picker importing the measurement that
    imports it (the circle issue #24 found), are both caught."""
    edges = _edges()
    edges["graphport.emit.tf.norm"].add("graphport.passes.fuse")
    assert _upward(edges) == [("graphport.emit.tf.norm", "graphport.passes.fuse")]
    edges["graphport.runtime.batch_size"].add("graphport.runtime.measure")
    assert _circle(edges) in (["graphport.runtime.batch_size", "graphport.runtime.measure",
                               "graphport.runtime.batch_size"],
                              ["graphport.runtime.measure", "graphport.runtime.batch_size",
                               "graphport.runtime.measure"])
