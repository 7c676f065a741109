"""graphport's graphs in every TF C API host: TF 2.17 (Essentia's upstream, its own venv) and the installed 2.21.

Each artifact (model.pb, saved_model/) is loaded and run in a fresh process of the host, and its outputs are
compared with ONNX Runtime on the same inputs; the host must print no log line of severity warning or error while
loading and running it (TF 2.17's Grappler once logged six errors on FastViT's graph). TF 2.5 is Essentia's, in
tests/test_essentia.py. TF 2.17's venv is large, so those cases are opt-in (--run-hosts), and .ci/run runs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch_models

import graphport
from graphport.runtime.tf_hosts import LOG_PROBLEM, host_check

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MINI = Path(__file__).with_name("data") / "mini_effnet_opset11_dynamic.onnx"
FAMILIES = ["mobilenet_v2", "shufflenet", "resnet", "conv1d"]
HOSTS = [pytest.param(None, id="tf2.21"), pytest.param("2.17", id="tf2.17", marks=pytest.mark.hosts)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{name: (onnx, graphport folder)} for the mini EfficientNet and a few zoo families, converted once."""
    root = tmp_path_factory.mktemp("hosts")
    models = {"mini_effnet": MINI}
    for family in FAMILIES:
        net, example, n_out = torch_models.build(family)
        models[family] = torch_models.export(net, example, root / f"{family}.onnx", 17, False, n_out)
    out = {}
    for name, onnx_path in models.items():
        report = graphport.convert(onnx_path, root / name, batch_sizes=(1, 3))
        assert report.ok
        out[name] = (onnx_path, root / name)
    return out


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("artifact", ["model.pb", "saved_model"])
@pytest.mark.parametrize("model", ["mini_effnet", *FAMILIES])
def test_artifact_loads_runs_equal_and_quiet(converted, host, artifact, model):
    onnx_path, folder = converted[model]
    for onednn in (False, True):
        check = host_check(folder / artifact, host, batch=2, onednn=onednn)
        assert check.ok, check.error
        assert check.tf_version.startswith(host or "2.21")
        assert not check.log_problems, check.log_problems
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, check.feeds)))
        assert want.keys() == check.outputs.keys()
        for name, ref in want.items():
            assert np.abs(check.outputs[name] - ref).max() <= 1e-4 + 1e-5 * np.abs(ref).max(), (name, onednn)


def test_log_problem_lines_are_recognised():
    """The filter catches TF's error and warning lines in both of its formats, and lets info lines through."""
    lines = [("E0000 00:00:1796629930.520415   26761 tfg_optimizer_hook.cc:135] tfg_optimizer{...} failed: "
              "INVALID_ARGUMENT: Node stem/Add has an empty op name"),
             "2026-12-07 09:21:03.452629: W tensorflow/core/framework/op_kernel.cc:1840] OP_REQUIRES failed",
             "I0000 00:00:1796629930.554095   26761 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
             "2026-12-07 09:21:03.514867: I tensorflow/core/platform/cpu_feature_guard.cc:210] optimized"]
    assert [bool(LOG_PROBLEM.match(line)) for line in lines] == [True, True, False, False]


def _depthwise_residual(path: Path) -> Path:
    """x -> depthwise Conv (with bias) -> Add(., x) -> Relu: the pattern TF's oneDNN remapper fuses into an op-less
    node (graphport/emit/tf/remapper_guard.py)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=8, pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("Add", ["c", "x"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["y"], name="act")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16, 16])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_depthwise_bias_residual_keeps_grappler_quiet(tmp_path, monkeypatch):
    """With the rewrite TF 2.21 (oneDNN on) logs nothing at load and run; without it, Grappler's errors appear."""
    onnx_path = _depthwise_residual(tmp_path / "dw.onnx")
    assert graphport.convert(onnx_path, tmp_path / "fixed").ok
    fixed = host_check(tmp_path / "fixed" / "model.pb", None, batch=2, onednn=True)
    assert fixed.ok and not fixed.log_problems, fixed.log_problems
    from graphport.emit.tf import build

    monkeypatch.setattr(build, "move_depthwise_bias_past_add", lambda gd: 0)
    graphport.convert(onnx_path, tmp_path / "plain", verify_outputs=False)
    plain = host_check(tmp_path / "plain" / "model.pb", None, batch=2, onednn=True)
    assert any("empty op name" in line or "No registered ''" in line for line in plain.log_problems)


@pytest.mark.hosts
def test_bench_names_a_host_version(converted):
    from graphport.tools.benchmark import run_one

    row = run_one(converted["mini_effnet"][1], "capi@2.17", [1], 1, 600, onednn=False)
    assert row["status"] == "ok" and row["load_s"] > 0 and "1" in row["steady"]


def test_unknown_host_version_is_a_usage_error():
    import argparse

    from graphport.cli._args import backend_list

    assert backend_list("capi,capi@2.17") == ("capi", "capi@2.17")
    with pytest.raises(argparse.ArgumentTypeError, match="capi@2.17"):
        backend_list("capi@9.9")
