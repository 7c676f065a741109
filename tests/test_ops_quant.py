"""Quantized ops against ONNX Runtime: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
QLinearMatMul, ConvInteger and QLinearConv.

Small models built here (onnx.helper) compare each op with ORT bit for bit: round half to even, saturation, zero
points, per-tensor, per-axis and blocked scales, 16-, 4-bit and float8 types, and integer products large enough to
need graphport's exact two-digit split. Then the example EfficientNet, quantized with onnxruntime.quantization
(static QDQ per tensor and per channel, QOperator QLinearConv, dynamic ConvInteger/MatMulInteger), converts with
zero flags, every quantized node of every model equals ORT's exactly when fed ORT's own inputs to it, and the whole
models stay within a few steps of their quantized output (float ops between quantized ones, Conv and Sigmoid,
differ from ORT's in the last bit and now and then tip a value over a rounding boundary).

On x86 CPUs without VNNI, ORT's u8s8 integer kernels add pairs of products in saturating int16 (vpmaddubsw), so
int8 weights beyond 7 bits can make ORT differ from the ONNX definition, which graphport computes exactly. The
u8s8 models here keep |w| < 64 (as ORT's quantizer does with reduce_range); the large products use uint8 weights.
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnx.reference import ReferenceEvaluator

import graphport
from graphport.conversion.onnx_backend import prepare
from graphport.conversion.verify import QUANT_STEPS
from graphport.runtime import load

EXAMPLE = Path(graphport.__file__).parent / "examples" / "example_effnet.onnx"
INPUT = "melspectrogram"
RNG = np.random.default_rng(0)
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul",
             "ConvInteger", "QLinearConv"}


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray],
           outputs: list[str], opset: int) -> onnx.ModelProto:
    """A model fed `inputs` at run time, with `consts` as initializers; output types come from shape inference."""
    graph = helper.make_graph(
        nodes, "quant",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _ort(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray], optimised: bool = True) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimised:  # the graph as written: no QDQ fusion into ORT's own QLinearConv
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, feeds)


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    """Same dtype, shape and values, NaNs included."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if want.dtype.kind == "f":
        return bool(np.array_equal(got, want, equal_nan=True))
    return bool(np.array_equal(got.astype(np.int64), want.astype(np.int64)))


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], reference: bool = False) -> None:
    """graphport's outputs equal ORT's, or the ONNX reference's for zero-point layouts ORT does not implement
    (MatMulInteger per row, ConvInteger per output channel)."""
    want = ReferenceEvaluator(model).run(None, feeds) if reference else _ort(model, feeds)
    got = prepare(model).run(feeds)
    for g, w, name in zip(got, want, [o.name for o in model.graph.output]):
        assert _same(np.asarray(g), w), f"{name}: graphport {g.dtype}{g.shape} vs {w.dtype}{w.shape}\n{g}\n{w}"


def _ties(shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Values at exact halves of `scale` (where half-to-even and half-up differ) and far beyond the range."""
    x = (RNG.integers(-700, 700, shape) * 0.5 * scale).astype(np.float32)
    x.flat[:4] = [0.5 * scale, 1.5 * scale, -2.5 * scale, 1e9]
    return x


def _q(op: str, x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, opset: int, cast: tuple[int, int] = (0, 0),
       **attrs) -> onnx.ModelProto:
    """One `op` on x; `cast` = (type x is cast to first, type y is cast to after), for float8 and 4-bit values,
    which ORT's Python API can neither take nor return."""
    names = ["xc" if cast[0] else "x", "s", "z"] if zp is not None else ["xc" if cast[0] else "x", "s"]
    consts = {"s": scale, **({"z": zp} if zp is not None else {})}
    nodes = [helper.make_node(op, names, ["q" if cast[1] else "y"], **attrs)]
    if cast[0]:
        nodes.insert(0, helper.make_node("Cast", ["x"], ["xc"], to=cast[0]))
    if cast[1]:
        nodes.append(helper.make_node("Cast", ["q"], ["y"], to=cast[1]))
    return _model(nodes, {"x": x}, consts, ["y"], opset)


F8_BIG = np.array([0.0, 0.3, -1.7, 447.0, 465.0, 1e6, -1e6, np.inf, np.nan], np.float32)

QUANTIZE_CASES = {
    "uint8_per_tensor_opset10": lambda: (_ties((2, 3, 4, 5), 0.1), np.float32(0.1), np.uint8(128), 10, {}),
    "int8_per_axis": lambda: (_ties((2, 3, 4), 0.05), np.array([0.05, 0.1, 0.2], np.float32),
                              np.array([-3, 0, 7], np.int8), 13, {"axis": 1}),
    "int8_no_zero_point_output_dtype": lambda: (_ties((4, 6), 0.25), np.float32(0.25), None, 21,
                                                {"output_dtype": TensorProto.INT8}),
    "uint16": lambda: (_ties((3, 5), 0.001), np.float32(0.001), np.uint16(30000), 21, {}),
    "int16_per_axis_last": lambda: (_ties((3, 4), 0.002), np.full(4, 0.002, np.float32),
                                    np.array([0, 5, -9, 100], np.int16), 21, {"axis": -1}),
    "int4_per_axis": lambda: (_ties((2, 5), 0.5), np.array([0.5, 1.0], np.float32),
                              np.array([1, -2], ml_dtypes.int4), 21, {"axis": 0, "cast": (0, TensorProto.INT8)}),
    "uint4": lambda: (_ties((2, 5), 0.5), np.float32(0.5), np.array(3, ml_dtypes.uint4), 21,
                      {"cast": (0, TensorProto.UINT8)}),
    "int8_blocked": lambda: (_ties((3, 5), 0.1), (RNG.random((3, 3)) * 0.2 + 0.05).astype(np.float32),
                             RNG.integers(-5, 5, (3, 3)).astype(np.int8), 21, {"axis": 1, "block_size": 2}),
    "e4m3fn_saturate": lambda: (F8_BIG, np.float32(1.0), np.zeros((), ml_dtypes.float8_e4m3fn), 19,
                                {"cast": (0, TensorProto.FLOAT)}),
    "e5m2_no_saturate": lambda: (F8_BIG * 200, np.float32(2.0), np.zeros((), ml_dtypes.float8_e5m2), 19,
                                 {"saturate": 0, "cast": (0, TensorProto.FLOAT)}),
}


@pytest.mark.parametrize("case", QUANTIZE_CASES)
def test_quantize_linear(case):
    x, scale, zp, opset, attrs = QUANTIZE_CASES[case]()
    zp = None if zp is None else np.asarray(zp)
    _check(_q("QuantizeLinear", x, np.asarray(scale), zp, opset, **attrs), {"x": x})


DEQUANTIZE_CASES = {
    "uint8_opset10": lambda: (RNG.integers(0, 256, (2, 3, 4), dtype=np.uint8), np.float32(0.37), np.uint8(130),
                              10, {}),
    "int8_per_axis": lambda: (RNG.integers(-128, 128, (2, 3, 4)).astype(np.int8),
                              np.array([0.1, 0.2, 0.3], np.float32), np.array([-1, 0, 5], np.int8), 13, {}),
    "int32_bias": lambda: (RNG.integers(-2**30, 2**30, (7,)).astype(np.int32), np.float32(3e-5), None, 13, {}),
    "int16_float16_scale": lambda: (RNG.integers(-2**15, 2**15, (3, 4)).astype(np.int16), np.float16(0.01),
                                    np.int16(-7), 21, {}),
    "int8_blocked": lambda: (RNG.integers(-128, 128, (2, 5)).astype(np.int8),
                             np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32),
                             np.array([[1, 2, 3], [-1, -2, -3]], np.int8), 21, {"axis": 1, "block_size": 2}),
    "e4m3fn": lambda: (F8_BIG[:7], np.float32(0.5), None, 19, {"cast": (TensorProto.FLOAT8E4M3FN, 0)}),
}


@pytest.mark.parametrize("case", DEQUANTIZE_CASES)
def test_dequantize_linear(case):
    x, scale, zp, opset, attrs = DEQUANTIZE_CASES[case]()
    zp = None if zp is None else np.asarray(zp)
    _check(_q("DequantizeLinear", np.asarray(x), np.asarray(scale), zp, opset, **attrs), {"x": np.asarray(x)})


def test_runtime_scale_and_zero_point():
    x = _ties((2, 3, 4), 0.1)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    feeds = {"x": x, "s": np.array([0.1, 0.05, 0.2], np.float32), "z": np.array([10, 128, 250], np.uint8)}
    _check(_model(nodes, feeds, {}, ["q", "y"], 13), feeds)


def test_per_channel_qdq_between_channels_last_ops():
    """Q and DQ follow a pool's NHWC layout: the per-channel axis 1 must land on TF's last axis (MaxPool is exact,
    so both sides quantize the same floats)."""
    x = _ties((2, 3, 6, 5), 0.05)
    scale, zp = np.array([0.05, 0.1, 0.02], np.float32), np.array([0, 9, -9], np.int8)
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("QuantizeLinear", ["p", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], axis=1),
             helper.make_node("MaxPool", ["d"], ["y"], kernel_shape=[1, 2])]
    _check(_model(nodes, {"x": x}, {"s": scale, "z": zp}, ["q", "y"], 13), {"x": x})


def test_qdq_weights_of_a_depthwise_conv_are_constant():
    """Opset 13: DequantizeLinear of int8 weights is folded during emission, so the grouped Conv sees constants."""
    x = RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = RNG.integers(-127, 128, (4, 1, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             helper.make_node("Conv", ["x", "wf"], ["y"], group=4, pads=[1, 1, 1, 1])]
    consts = {"w": w, "ws": np.array([0.01, 0.02, 0.03, 0.04], np.float32), "wz": np.zeros(4, np.int8)}
    model = _model(nodes, {"x": x}, consts, ["y"], 13)
    np.testing.assert_allclose(prepare(model).run({"x": x})[0], _ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("x", [RNG.standard_normal((2, 3, 5)).astype(np.float32) * 4,
                               np.abs(RNG.standard_normal((4, 5))).astype(np.float32),
                               -np.abs(RNG.standard_normal((4, 5))).astype(np.float32),
                               np.zeros((2, 2), np.float32)], ids=["mixed", "positive", "negative", "zeros"])
def test_dynamic_quantize_linear(x):
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    _check(_model([node], {"x": x}, {}, ["y", "s", "z"], 11), {"x": x})


def _u8(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _s7(shape: tuple[int, ...]) -> np.ndarray:
    """int8 weights below 64 in magnitude: ORT's u8s8 kernels are exact for those on every x86 CPU."""
    return RNG.integers(-63, 64, shape).astype(np.int8)


def _extremes(shape: tuple[int, ...]) -> np.ndarray:
    """uint8 weights at 0 and 255: with zero point 128 every product is as large as it gets."""
    return np.where(RNG.random(shape) < 0.5, 0, 255).astype(np.uint8)


MATMUL_CASES = {  # (A fed at run time, B constant, a_zero_point, b_zero_point)
    "u8s8_2d": lambda: (_u8((5, 7)), _s7((7, 3)), np.uint8(12), np.int8(0)),
    "u8s8_3d_per_column": lambda: (_u8((2, 5, 7)), _s7((7, 3)), np.uint8(200), np.array([1, -2, 3], np.int8)),
    "u8u8_per_row_3d": lambda: (_u8((2, 4, 6)), _u8((6, 2)), np.arange(1, 9, dtype=np.uint8).reshape(2, 4, 1),
                                np.uint8(128)),
    "u8u8_large_inner_split": lambda: (_u8((3, 600)), _extremes((600, 4)), np.uint8(0), np.uint8(128)),
}


def test_matmul_integer_per_row_vector():
    """A per-row a_zero_point given as an M-vector (ORT does not take it, the ONNX reference only as [M, 1])."""
    a, b, zp = _u8((4, 6)), _u8((6, 2)), np.array([1, 2, 3, 200], np.uint8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"])
    want = ReferenceEvaluator(_model([node], {"a": a}, {"b": b, "az": zp[:, None]}, ["y"], 10)).run(None, {"a": a})
    got = prepare(_model([node], {"a": a}, {"b": b, "az": zp}, ["y"], 10)).run({"a": a})
    assert _same(got[0], want[0])


@pytest.mark.parametrize("case", MATMUL_CASES)
def test_matmul_integer(case):
    a, b, a_zp, b_zp = MATMUL_CASES[case]()
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    model = _model([node], {"a": a}, {"b": b, "az": np.asarray(a_zp), "bz": np.asarray(b_zp)}, ["y"], 10)
    _check(model, {"a": a}, reference=np.size(a_zp) > 1)


def test_matmul_integer_runtime_operands():
    a, b = RNG.integers(-128, 128, (2, 3, 5)).astype(np.int8), _u8((2, 5, 4))
    feeds = {"a": a, "b": b, "az": np.array(-5, np.int8), "bz": np.array(77, np.uint8)}
    _check(_model([helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])], feeds, {}, ["y"], 10), feeds)


@pytest.mark.parametrize("case", ["u8s8_2d", "u8s8_3d_per_column", "u8u8_large_inner_split"])
def test_qlinear_matmul(case):
    a, b, a_zp, b_zp = MATMUL_CASES[case]()
    consts = {"as": np.float32(0.02), "az": np.asarray(a_zp), "b": b, "bs": np.full(b.shape[-1], 0.003, np.float32),
              "bz": np.broadcast_to(b_zp, b.shape[-1:]).copy(), "ys": np.float32(0.5), "yz": np.uint8(100)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    _check(_model([node], {"a": a}, consts, ["y"], 10), {"a": a})


CONV_CASES = {  # (x, w, x_zero_point, w_zero_point, attributes)
    "pads_strides": lambda: (_u8((2, 3, 9, 8)), _s7((4, 3, 3, 3)), np.uint8(128), np.int8(0),
                             {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    "depthwise_per_channel": lambda: (_u8((1, 4, 7, 7)), _s7((4, 1, 3, 3)), np.uint8(3),
                                      np.array([0, 1, -1, 2], np.int8), {"group": 4, "pads": [1, 1, 1, 1]}),
    "grouped_dilated": lambda: (_u8((1, 4, 8, 8)), _s7((6, 2, 3, 3)), np.uint8(90), np.int8(0),
                                {"group": 2, "dilations": [2, 1]}),
    "conv1d_same": lambda: (_u8((2, 3, 11)), _s7((5, 3, 4)), np.uint8(10), np.int8(0), {"auto_pad": "SAME_UPPER"}),
    "u8u8_large_inner_split": lambda: (_u8((1, 600, 3, 3)), _extremes((2, 600, 1, 1)), np.uint8(255),
                                       np.uint8(128), {}),
}


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_integer(case):
    x, w, x_zp, w_zp, attrs = CONV_CASES[case]()
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], **attrs)
    model = _model([node], {"x": x}, {"w": w, "xz": np.asarray(x_zp), "wz": np.asarray(w_zp)}, ["y"], 10)
    _check(model, {"x": x}, reference=np.size(w_zp) > 1)


@pytest.mark.parametrize("case", ["pads_strides", "depthwise_per_channel", "u8u8_large_inner_split"])
def test_qlinear_conv(case):
    x, w, x_zp, w_zp, attrs = CONV_CASES[case]()
    cout = w.shape[0]
    consts = {"xs": np.float32(0.05), "xz": np.asarray(x_zp), "w": w,
              "ws": np.linspace(0.001, 0.004, cout).astype(np.float32), "wz": np.broadcast_to(w_zp, (cout,)).copy(),
              "ys": np.float32(0.7), "yz": np.asarray(x_zp), "b": RNG.integers(-5000, 5000, cout).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
    _check(_model([node], {"x": x}, consts, ["y"], 10), {"x": x})


def test_rounding_mode_is_checked(break_emitter):
    """The comparison catches round-half-up where ONNX (and ORT) round half to even."""
    import tensorflow as tf

    def half_up(ctx, node):
        ctx.set(node.outputs[0], tf.cast(tf.clip_by_value(tf.floor(ctx.onnx_order(node.inputs[0]) / 0.1 + 0.5)
                                                          + 128, 0, 255), tf.uint8))

    x = _ties((2, 3, 4, 5), 0.1)
    _check(_q("QuantizeLinear", x, np.float32(0.1), np.uint8(128), 10), {"x": x})
    break_emitter("QuantizeLinear", half_up)
    with pytest.raises(AssertionError):
        _check(_q("QuantizeLinear", x, np.float32(0.1), np.uint8(128), 10), {"x": x})


@pytest.mark.parametrize("output", ["float", "integer"])
def test_verification_counts_quantization_steps(output, tmp_path, break_emitter):
    """A quantized output within QUANT_STEPS steps of ORT verifies; one that is a few steps further off does not,
    whether it is dequantized (float) or the quantized integers themselves."""
    import tensorflow as tf

    from graphport.emit.tf import quant

    x = np.random.default_rng(4).standard_normal((1, 3, 8)).astype(np.float32)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])]
    if output == "float":
        nodes.append(helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]))
    consts = {"s": np.float32(0.05), "z": np.uint8(128)}
    model = _model(nodes, {"x": x}, consts, ["y" if output == "float" else "q"], 13)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)

    def shifted(steps: int):
        """The real converter of the output's op, then the output moved by `steps` quantization steps."""
        def handler(ctx, node):
            real(ctx, node)
            v = ctx.onnx_order(node.outputs[0])
            moved = v + steps * 0.05 if output == "float" else tf.cast(tf.cast(v, tf.int32) + steps, v.dtype)
            ctx.set(node.outputs[0], moved)
        return handler

    op_type = "DequantizeLinear" if output == "float" else "QuantizeLinear"
    real = quant.dequantize_linear if output == "float" else quant.quantize_linear
    break_emitter(op_type, shifted(QUANT_STEPS - 1))
    assert graphport.convert(path, tmp_path / "near", batch_sizes=(1, 3)).ok
    break_emitter(op_type, shifted(QUANT_STEPS + 2))
    assert not graphport.convert(path, tmp_path / "far", batch_sizes=(1, 3)).ok


# ---- the example EfficientNet, quantized by onnxruntime.quantization -------------------------------------------

def _calibration(n: int = 4):
    from onnxruntime.quantization import CalibrationDataReader

    class Seeded(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.batches = iter([{INPUT: rng.standard_normal((2, 128, 96)).astype(np.float32)} for _ in range(n)])

        def get_next(self):
            return next(self.batches, None)

    return Seeded()


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict[str, Path]:
    """The example at opset 13 (per-channel Q/DQ need `axis`), pre-processed as onnxruntime.quantization asks,
    then quantized four ways."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    root = tmp_path_factory.mktemp("quantized")
    onnx.save(version_converter.convert_version(onnx.load(EXAMPLE), 13), root / "opset13.onnx")
    quant_pre_process(str(root / "opset13.onnx"), str(root / "pre.onnx"))
    pre, paths = str(root / "pre.onnx"), {k: root / f"{k}.onnx" for k in ("qdq", "qdq_per_channel", "qop", "dynamic")}
    quantize_static(pre, str(paths["qdq"]), _calibration(), quant_format=QuantFormat.QDQ)
    quantize_static(pre, str(paths["qdq_per_channel"]), _calibration(), quant_format=QuantFormat.QDQ,
                    per_channel=True)
    quantize_static(pre, str(paths["qop"]), _calibration(), quant_format=QuantFormat.QOperator, per_channel=True,
                    op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=True)  # 7-bit weights: see the module docstring
    quantize_dynamic(pre, str(paths["dynamic"]), reduce_range=True)
    return paths


KINDS = ["qdq", "qdq_per_channel", "qop", "dynamic"]
# Float ops between quantized ones (TF's Conv summation order and Sigmoid against MLAS's, in the last bit) move an
# activation across a rounding boundary now and then, and that can reach the output. Measured on these models over
# 24 runs each: at most 3.0 output steps from ORT running the graph as written (mean 0.6-1.0); ORT's own default
# session differs from that by up to 7 steps on the QDQ models (its fused QLinearConv rounds differently).
STEPS = QUANT_STEPS


@pytest.fixture(scope="module")
def converted(quantized, tmp_path_factory) -> dict[str, tuple[graphport.ConversionReport, Path]]:
    """Zero flags: verification measures quantized outputs in quantization steps (graphport.conversion.verify.QUANT_STEPS)."""
    root = tmp_path_factory.mktemp("converted")
    return {kind: (graphport.convert(quantized[kind], root / kind, batch_sizes=(1, 3)), root / kind)
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_effnet_converts(kind, quantized, converted):
    ops = {n.op_type for n in onnx.load(quantized[kind]).graph.node}
    assert ops & QUANT_OPS >= {"qdq": {"QuantizeLinear", "DequantizeLinear"}, "qdq_per_channel": {"DequantizeLinear"},
                               "qop": {"QLinearConv"}, "dynamic": {"ConvInteger", "MatMulInteger"}}[kind]
    report = converted[kind][0]
    assert report.ok and not report.warnings


def _output_step(path: Path, ref: np.ndarray) -> float:
    """One quantization step of the output: the scale of the DequantizeLinear that produces it (QDQ models), else
    a uint8 step over the output's range (float outputs)."""
    model = onnx.load(path)
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    last = next(n for n in model.graph.node if n.output[0] == model.graph.output[0].name)
    if last.op_type == "DequantizeLinear":
        return float(consts[last.input[1]])
    return (max(ref.max(), 0.0) - min(ref.min(), 0.0)) / 255


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_effnet_matches_ort(kind, quantized, converted):
    """Within STEPS output steps of ORT running the graph as written, and of its default (fused) session within
    that plus the steps by which ORT's two sessions differ from each other."""
    session = load(converted[kind][1], backend="session")
    try:
        for batch, seed in ((1, 10), (3, 11), (8, 12)):
            x = {INPUT: np.random.default_rng(seed).standard_normal((batch, 128, 96)).astype(np.float32)}
            got = session.run(x)["output_0"]
            written, fused = _ort(str(quantized[kind]), x, optimised=False)[0], _ort(str(quantized[kind]), x)[0]
            step = _output_step(quantized[kind], written)
            assert np.abs(got - written).max() <= STEPS * step
            assert np.abs(got - fused).max() <= np.abs(fused - written).max() + STEPS * step
    finally:
        session.close()


def _cut_apart(path: Path, x: np.ndarray) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The model's quantized nodes as one model of independent nodes, each fed the values ORT computed for its
    inputs on `x`: so every node is checked on real data even where float ops upstream (TF's Sigmoid against
    ORT's, last bits) make the two runs' inputs differ. Returns (model, feeds, ORT's outputs)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    consts = {t.name: t for t in model.graph.initializer}
    listed = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(o) for n in model.graph.node for o in n.output
                              if o and o not in listed)
    names = [o.name for o in model.graph.output]
    values = dict(zip(names, _ort(model, {INPUT: x}, optimised=False)))
    nodes, feeds, want, used = [], {}, {}, {}
    for i, node in enumerate(n for n in model.graph.node if n.op_type in QUANT_OPS):
        inputs = [n if not n or n in consts else f"{n}@{i}" for n in node.input]
        feeds.update({f"{n}@{i}": values[n] for n in node.input if n and n not in consts})
        outputs = [f"{o}@{i}" for o in node.output]
        want.update({o: values[n] for o, n in zip(outputs, node.output)})
        used.update({n: consts[n] for n in node.input if n in consts})
        nodes.append(helper.make_node(node.op_type, inputs, outputs, **{a.name: helper.get_attribute_value(a)
                                                                            for a in node.attribute}))
    graph = helper.make_graph(
        nodes, "cut", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                       for n, a in feeds.items()],
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in want.items()],
        list(used.values()))
    return helper.make_model(graph, opset_imports=model.opset_import), feeds, want


@pytest.mark.parametrize("kind", KINDS)
def test_every_quantized_node_exact_on_real_data(kind, quantized):
    x = np.random.default_rng(3).standard_normal((2, 128, 96)).astype(np.float32)
    model, feeds, want = _cut_apart(quantized[kind], x)
    assert len(model.graph.node) > 30
    got = prepare(model).run(feeds)
    bad = [n for n, g in zip(want, got) if not _same(np.asarray(g), want[n])]
    assert not bad, f"{len(bad)} of {len(want)} quantized outputs differ from ORT's, first {bad[:3]}"
