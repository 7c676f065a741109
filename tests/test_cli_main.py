"""The `graphport` command's own layer: one registration path, one error path, fast parser, options with help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import graphport.cli
from graphport.cli import bench_command as bench_cmd
from graphport.cli import build_parser, main
from graphport.cli import convert_command as convert_cmd
from graphport.core.errors import CAPIError, EssentiaUnavailable, GraphportError, MissingExtra, require_extra

EXAMPLE = Path(__file__).parents[1] / "graphport" / "examples" / "example_effnet.onnx"
MINI = Path(__file__).parent / "data" / "mini_onnxtf_dynamic_savedmodel"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_registered_one_way():
    commands = _subparsers(build_parser())
    assert set(commands) == {"convert", "example", "bench", "profile", "doctor", "predict"}
    for name, sub in commands.items():
        run = sub.get_default("run")
        assert run is getattr(graphport.cli, f"{name}_command").run, name


def test_every_option_has_help():
    parser = build_parser()
    for name, sub in {"graphport": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            if action.option_strings or name != "graphport":
                assert action.help and action.help.strip(), f"{name} {action.dest} has no help"


def test_names_repeated_for_a_fast_parser_match_their_source():
    from graphport.audio import LAST_PATCH_MODES
    from graphport.cli._args import BACKEND_NAMES
    from graphport.cli.predict_command import LAST_PATCH_MODES as CLI_LAST_PATCH_MODES
    from graphport.runtime.backends import BACKENDS

    assert BACKEND_NAMES == BACKENDS and CLI_LAST_PATCH_MODES == LAST_PATCH_MODES


def test_help_imports_neither_tensorflow_nor_numpy():
    code = ("import sys\nfrom graphport.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in ('tensorflow', 'numpy', 'onnx', 'onnxruntime') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"
    run = subprocess.run([sys.executable, "-m", "graphport", "--help"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0 and "convert" in run.stdout and "predict" in run.stdout


def test_unknown_backend_is_a_usage_error_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", str(EXAMPLE), "--backends", "onnxruntime,cuda"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "'cuda'" in err and "capi, session, tf2, onnxruntime, essentia" in err


def test_global_options_before_or_after_the_command(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(convert_cmd, "run", lambda args, console: seen.append((args.traceback, args.verbose)) or 0)
    assert main(["--traceback", "convert", "m.onnx", "-o", "o"]) == 0
    assert main(["convert", "m.onnx", "-o", "o", "--verbose"]) == 0
    assert main(["convert", "m.onnx", "-o", "o"]) == 0
    assert seen == [(True, False), (False, True), (False, False)]


@pytest.mark.parametrize(("error", "code"), [
    (GraphportError("bad input"), 2),
    (CAPIError("TF_SessionRun: boom"), 1),  # a TF run failure
    (EssentiaUnavailable("no python3.11 was found"), 2),  # the user's environment to fix
    (MissingExtra("needs the audio extra"), 2),
    (KeyboardInterrupt(), 130),
])
def test_errors_become_exit_codes_in_one_paragraph(monkeypatch, capsys, error, code):
    def fail(args, console):
        raise error

    monkeypatch.setattr(convert_cmd, "run", fail)
    assert main(["convert", "m.onnx", "-o", "o"]) == code
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert ("interrupted" if code == 130 else f"error: {error}") in out


def test_internal_error_is_one_paragraph_unless_traceback(monkeypatch, capsys):
    def bug(args, console):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(convert_cmd, "run", bug)
    assert main(["convert", "m.onnx", "-o", "o"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "internal error in 'graphport convert': ZeroDivisionError: division by zero" in out
    assert "--traceback" in out
    with pytest.raises(ZeroDivisionError):
        main(["--traceback", "convert", "m.onnx", "-o", "o"])


def test_doctor_user_error_through_main(capsys):
    assert main(["doctor", str(MINI), "--fix"]) == 2
    assert "error: --fix needs -o OUT" in capsys.readouterr().out


def test_existing_output_names_the_option_not_the_python_argument(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main(["convert", str(EXAMPLE), "-o", str(tmp_path / "out")]) == 2
    msg = " ".join(capsys.readouterr().out.split())
    assert "already exists; replace it with --force." in msg and "force=True" not in msg


def test_require_extra_names_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "samplerate" else real(name, *a))
    with pytest.raises(MissingExtra) as e:
        require_extra("audio", "graphport predict")
    assert str(e.value) == ("graphport predict needs the audio extra (samplerate not installed): "
                            "pip install 'graphport[audio]'")
    require_extra("audio", "graphport predict", ("soundfile",))  # only what is asked for is checked


@pytest.mark.parametrize(("argv", "module", "extra"), [
    (["predict", str(EXAMPLE), "a.wav", "-o", "out"], "soundfile", "audio"),
    (["predict", str(EXAMPLE), "a.wav", "-o", "out", "--engine", "ray"], "ray", "ray"),
    (["bench", str(EXAMPLE), "--report", "r.png"], "matplotlib", "report"),
])
def test_commands_check_their_extra_first(monkeypatch, capsys, argv, module, extra):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    assert main(argv) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert f"needs the {extra} extra" in out and f"pip install 'graphport[{extra}]'" in out


def test_bench_with_no_applicable_backend_is_an_error(capsys):
    assert main(["bench", str(EXAMPLE), "--backends", "capi"]) == 2  # an .onnx file runs on onnxruntime only
    assert "nothing to measure" in capsys.readouterr().out
    assert bench_cmd.run is graphport.cli.bench_command.run
