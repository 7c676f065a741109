"""Output folders and files: modes from the umask, nothing half-written, no temporaries left behind."""

from __future__ import annotations

import os
import stat

import pytest

import graphport
from graphport.conversion.bundled_example import EXAMPLE
from graphport.core import model_json
from graphport.core.atomic import write_file
from graphport.predict import prepare_model


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_convert_output_is_readable_by_other_users(tmp_path, umask_022):
    out = tmp_path / "out"
    graphport.convert(EXAMPLE, out, verify_outputs=False)
    assert _modes(out) == {("dir", 0o755), ("file", 0o644)}


def test_write_file_is_atomic_and_follows_the_umask(tmp_path, umask_022):
    target = write_file(tmp_path / "a" / "x.json", "{}")
    assert target.read_text() == "{}" and stat.S_IMODE(target.stat().st_mode) == 0o644

    def dies(f):
        f.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_file(target, dies)
    assert target.read_text() == "{}" and [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_predict_cache_leaves_no_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHPORT_CACHE_DIR", str(tmp_path / "cache"))
    target = prepare_model(EXAMPLE, log=lambda _: None)
    assert model_json.read(target)["producer"] == "graphport convert"
    assert prepare_model(EXAMPLE, log=lambda _: None) == target
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_predict_cache_converts_again_after_a_converter_change(tmp_path, monkeypatch):
    """A conversion cached by another graphport (an upgrade, a changed rewrite) is not reused."""
    from graphport.predict import model

    monkeypatch.setenv("GRAPHPORT_CACHE_DIR", str(tmp_path / "cache"))
    logs: list[str] = []
    monkeypatch.setattr(model, "converter_stamp", lambda: "old")
    old = prepare_model(EXAMPLE, log=logs.append)
    monkeypatch.setattr(model, "converter_stamp", lambda: "new")
    new = prepare_model(EXAMPLE, log=logs.append)
    assert old != new and old.name == new.name  # same file hash, another converter
    assert len(logs) == 2 and all(line.startswith("converting") for line in logs)


def test_model_json_of_another_layout_is_one_clear_error(tmp_path):
    (tmp_path / "model.json").write_text('{"pb": {"inputs": {"x": "x"}}}')
    with pytest.raises(graphport.GraphportError, match="not a graphport model.json"):
        model_json.read(tmp_path)
    (tmp_path / "model.json").write_text('{"schema": "graphport.model/99", "inputs": [], "outputs": []}')
    with pytest.raises(graphport.GraphportError, match="graphport.model/99"):
        model_json.read(tmp_path)
