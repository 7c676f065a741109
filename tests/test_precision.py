"""`--precision fp32|bf16|auto` (runtime/precision.py) and the bf16 measurement of `convert` (conversion/verify.py).

The rules run everywhere, on a pretended CPU; what needs AVX-512 BF16 or AMX is skipped with that reason elsewhere
(CI's CPU may lack it), and the fp32 path it stands beside is covered on every CPU. bf16 results are compared with
ORT's fp32 outputs computed here, never with graphport's own, and the comparison is shown to refuse a broken one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from rich.console import Console

from graphport.cli import main
from graphport.conversion.verify import BF16_FACTOR, _bf16_verdict
from graphport.core.errors import GraphportError
from graphport.runtime import capi, load, precision
from graphport.runtime.precision import BF16_EPS, PrecisionUnavailable, bf16_obstacle, choose, onednn_on

MINI = Path(__file__).with_name("data") / "mini_effnet_opset11_dynamic.onnx"
HAS_BF16 = bf16_obstacle(onednn=True) is None
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason=f"bf16 cannot run here: {bf16_obstacle(onednn=True)}")


def run(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    return main(list(argv), out=Console(file=buf, width=200)), buf.getvalue()


@pytest.fixture
def cpu(monkeypatch):
    """Pretend the CPU has the given flags."""
    def pretend(*flags: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    return pretend


def test_fp32_is_the_default_and_always_runs(cpu):
    cpu()
    assert choose("fp32", "capi", onednn=False) == "fp32"
    assert choose("auto", "capi", onednn=True) == "fp32"  # no bf16 instructions: auto stays fp32


def test_bf16_without_the_cpu_flags_names_them(cpu):
    cpu("avx2", "avx512f")
    with pytest.raises(PrecisionUnavailable, match="avx512_bf16 nor amx_bf16") as e:
        choose("bf16", "capi", onednn=True)
    assert e.value.exit_code == 2


def test_bf16_needs_onednn_and_a_tf_backend(cpu):
    cpu("avx512_bf16")
    assert choose("bf16", "session", onednn=True) == "bf16"
    with pytest.raises(PrecisionUnavailable, match="oneDNN is off"):
        choose("bf16", "capi", onednn=False)
    with pytest.raises(PrecisionUnavailable, match="onnxruntime backend"):
        choose("bf16", "onnxruntime", onednn=True)
    assert choose("auto", "onnxruntime", onednn=True) == "fp32"
    with pytest.raises(GraphportError, match="unknown precision"):
        choose("fp16", "capi")


def test_auto_respects_the_conversions_verdict(cpu):
    cpu("amx_bf16", "amx_tile")
    assert choose("auto", "capi", onednn=True) == "bf16"
    assert choose("auto", "capi", onednn=True, verified=True) == "bf16"
    assert choose("auto", "capi", onednn=True, verified=False) == "fp32"


def test_onednn_default_follows_tf_rule(cpu):
    cpu("avx512_vnni")
    assert onednn_on({}) and not onednn_on({"TF_ENABLE_ONEDNN_OPTS": "0"})
    cpu("avx2")
    assert not onednn_on({}) and onednn_on({"TF_ENABLE_ONEDNN_OPTS": "true"})


def test_session_config_turns_the_rewrite_on():
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

    on = config_pb2.ConfigProto.FromString(capi.session_config(2, 1, bf16=True))
    off = config_pb2.ConfigProto.FromString(capi.session_config(2, 1))
    assert on.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.ON
    assert off.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.DEFAULT
    assert on.intra_op_parallelism_threads == 2
    bare = config_pb2.ConfigProto.FromString(capi.session_config(bf16=True))
    assert bare.intra_op_parallelism_threads == 0  # TF's default pools


def test_verdict_refuses_a_broken_bf16_result():
    """The check can fail: outputs off by 10 bf16 epsilons of their scale are out of tolerance, 1 epsilon is in."""
    rng = np.random.default_rng(0)
    ref = {(2, 0): {"y": rng.standard_normal((2, 8)).astype(np.float32)}}
    scale = float(np.abs(ref[(2, 0)]["y"]).max())
    for eps, ok in ((1.0, True), (10.0, False)):
        got = {(2, 0): {"y": ref[(2, 0)]["y"] + np.float32(eps * BF16_EPS * scale)}}
        verdict = _bf16_verdict((got, {}, None), None, ref, ["y"], [{}], {"y": 0.0})
        assert verdict.ok is ok and verdict.checks[0].ok is ok
        assert verdict.tolerance["y"] == pytest.approx(BF16_FACTOR * BF16_EPS * scale)


def test_cli_refuses_bf16_where_it_cannot_run(tmp_path, monkeypatch):
    with pytest.raises(PrecisionUnavailable, match="onnxruntime backend"):
        load(MINI, "onnxruntime", precision="bf16")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # with oneDNN off bf16 cannot run on any CPU
    code, text = run("example", "-o", str(tmp_path / "ex"), "--precision", "bf16")
    assert code == 2 and "--precision bf16 cannot run" in text and not (tmp_path / "ex").exists()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("precision") / "out"
    code, text = run("convert", str(MINI), "-o", str(out))
    assert code == 0, text
    return out


def _feed(batch: int) -> dict[str, np.ndarray]:
    return {"melspectrogram": np.random.default_rng(batch).standard_normal((batch, 128, 96)).astype(np.float32)}


def test_convert_records_the_bf16_verdict(converted):
    bf16 = json.loads((converted / "model.json").read_text())["verification"]["bf16"]
    if not HAS_BF16:
        assert bf16["ok"] is None and "bf16" in bf16["reason"]
        return
    assert bf16["ok"] is True and bf16["checks"] and bf16["tolerance"]["output_0"] > 0
    assert {c["batch"] for c in bf16["checks"]} >= {1, 64}


def test_fp32_sessions_stay_equal_to_ort(converted):
    ref = ort.InferenceSession(str(MINI)).run(None, _feed(5))[0]
    with_default = load(converted, "capi")
    got = with_default.run(_feed(5))["output_0"]
    assert with_default.precision == "fp32" and np.abs(got - ref).max() < 1e-4
    with_default.close()


@needs_bf16
@pytest.mark.parametrize("backend", ["capi", "session"])
def test_bf16_session_is_close_to_ort_fp32_and_not_fp32(converted, backend):
    """bf16 within the verdict's tolerance of ORT's fp32, and measurably not fp32: the rewrite took effect."""
    import os

    if not onednn_on(dict(os.environ)):
        pytest.skip("oneDNN is off in this test process (TF_ENABLE_ONEDNN_OPTS=0)")
    ref = ort.InferenceSession(str(MINI)).run(None, _feed(7))[0]
    session = load(converted, backend, precision="bf16")
    got = session.run(_feed(7))["output_0"]
    session.close()
    assert session.precision == "bf16"
    err = float(np.abs(got - ref).max())
    assert err <= BF16_FACTOR * BF16_EPS * float(np.abs(ref).max()) + 1e-4
    assert err > 1e-5, "bf16 gave fp32's result: the rewrite did not run"
