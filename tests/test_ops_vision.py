"""Vision and detection ops (graphport/emit/tf/vision.py, detection.py): GridSample, AffineGrid, DeformConv,
MaxUnpool, Col2Im, CenterCropPad, RoiAlign, MaxRoiPool and NonMaxSuppression.

Each model is a few nodes built with onnx.helper (plus a torch spatial transformer for GridSample/AffineGrid),
converted by `graphport.convert`, which runs the TF graph and ONNX Runtime on the same random inputs (at batch
1 and 3 where the batch is dynamic) and fails the report on any difference. Runtime coordinates (grids, offsets,
ROIs, boxes) are graph inputs, so standard-normal feeds reach every padding and edge case.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

import graphport
from graphport.core.errors import UnsupportedModel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

F32, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes: list, inputs: list, outputs: list, opset: int, inits: tuple = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def _in(name: str, shape: list, dtype: int = F32):
    return helper.make_tensor_value_info(name, dtype, shape)


def _out(name: str = "y", rank: int = 4, dtype: int = F32):
    return helper.make_tensor_value_info(name, dtype, [None] * rank)


def _const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value)))


def _scale(name: str, factor: float, out: str) -> list:
    """out = name * factor: spreads standard-normal feeds over a wider range of coordinates."""
    return [_const(f"{out}_k", np.float32(factor)), helper.make_node("Mul", [name, f"{out}_k"], [out])]


def convert_ok(model, tmp_path, batched: bool = True, **kwargs) -> graphport.ConversionReport:
    report = graphport.convert(model, tmp_path / "out", batch_sizes=(1, 3), **kwargs)
    v = report.verification
    assert report.ok, ([c for c in v.checks if not c.ok], v.failures, v.batch_invariance_ok)
    assert {c.batch for c in v.checks} == ({1, 3} if batched else {1})
    return report


# ---- GridSample, AffineGrid -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_grid_sample_16(tmp_path, mode, padding, align):
    nodes = [*_scale("g", 1.7, "grid"),  # |grid| > 1 often: every padding rule, reflection bouncing more than once
             helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding,
                              align_corners=align)]
    model = _model(nodes, [_in("x", ["N", 3, 5, 6]), _in("g", ["N", 4, 7, 2])], [_out()], 16)
    convert_ok(model, tmp_path)


@pytest.mark.parametrize("mode, padding, align", [("linear", "zeros", 0), ("nearest", "reflection", 1),
                                                  ("cubic", "border", 0), ("linear", "reflection", 0)])
def test_grid_sample_20_volumetric(tmp_path, mode, padding, align):
    """GridSample-20: 3-D (N-D) sampling and the new mode names; cubic stays 2-D (ONNX Runtime's limit)."""
    rank = 2 if mode == "cubic" else 3
    x_shape, g_shape = (["N", 2, 4, 5], ["N", 3, 4, 2]) if rank == 2 else (["N", 2, 3, 4, 5], ["N", 2, 3, 4, 3])
    nodes = [*_scale("g", 1.5, "grid"),
             helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding,
                              align_corners=align)]
    convert_ok(_model(nodes, [_in("x", x_shape), _in("g", g_shape)], [_out("y", rank + 2)], 20), tmp_path)


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid_size_from_shape(tmp_path, rank, align):
    """size is the input's shape (the batch a symbol read at run time, the rest folded), then sampled; a size fed
    whole at run time is the conformance tests' case."""
    spatial = [4, 5] if rank == 2 else [3, 4, 5]
    nodes = [helper.make_node("Shape", ["x"], ["size"]),
             helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=align),
             helper.make_node("GridSample", ["x", "grid"], ["y"], align_corners=align)]
    model = _model(nodes, [_in("x", ["N", 2, *spatial]), _in("theta", ["N", rank, rank + 1])],
                   [_out("y", rank + 2), _out("grid", rank + 2)], 20)
    convert_ok(model, tmp_path)


@pytest.mark.parametrize("align", [0, 1])
def test_affine_grid_constant_size(tmp_path, align):
    size = np.array([2, 1, 3, 7], np.int64)
    nodes = [helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=align)]
    convert_ok(_model(nodes, [_in("theta", [2, 2, 3])], [_out("grid")], 20, [("size", size)]), tmp_path,
               batched=False)


class SpatialTransformer(nn.Module):
    """A spatial transformer: a linear localisation head predicts theta, which warps the input. Below opset 20
    F.affine_grid has no ONNX export, so the grid is built as it computes it: base positions times theta."""

    def __init__(self, align: bool, mode: str, padding: str, native_grid: bool):
        super().__init__()
        self.loc = nn.Linear(3 * 8 * 8, 6)
        self.align, self.mode, self.padding, self.native_grid = align, mode, padding, native_grid
        ys, xs = (torch.linspace(-1, 1, n) if align else (torch.arange(n) * 2 + 1) / n - 1 for n in (6, 7))
        grid = torch.stack([xs.expand(6, 7), ys[:, None].expand(6, 7), torch.ones(6, 7)], dim=-1)
        self.register_buffer("base", grid.reshape(-1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.loc(x.flatten(1)).view(-1, 2, 3) + torch.tensor([[1.0, 0, 0], [0, 1, 0]])
        if self.native_grid:
            grid = F.affine_grid(theta, [x.shape[0], 3, 6, 7], align_corners=self.align)
        else:
            grid = (self.base @ theta.transpose(1, 2)).view(-1, 6, 7, 2)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.padding, align_corners=self.align)


@pytest.mark.parametrize("opset, align, mode, padding", [(17, False, "bilinear", "zeros"),
                                                         (17, True, "bicubic", "border"),
                                                         (20, False, "nearest", "reflection"),
                                                         (20, True, "bilinear", "zeros"),
                                                         (20, False, "bicubic", "reflection")])
def test_torch_spatial_transformer(tmp_path, opset, align, mode, padding):
    torch.manual_seed(0)
    net = SpatialTransformer(align, mode, padding, native_grid=opset >= 20).eval()
    path = tmp_path / "stn.onnx"
    torch.onnx.export(net, (torch.randn(2, 3, 8, 8),), str(path), opset_version=opset, dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "GridSample" in ops and ("AffineGrid" in ops) == (opset >= 20)
    convert_ok(path, tmp_path)


# ---- DeformConv ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group, offset_group, mask", [(1, 1, False), (2, 2, True), (2, 1, True), (1, 4, False)])
def test_deform_conv(tmp_path, group, offset_group, mask):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4 // group, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    # 7x6 input, kernel 3x2, dilation (1, 2), stride (2, 1), pads (1, 0, 1, 1): a 4x5 output
    inputs = [_in("x", ["N", 4, 7, 6]), _in("o", ["N", offset_group * 6 * 2, 4, 5])]
    names = ["x", "w", "off", "b"]
    nodes = _scale("o", 1.5, "off")
    if mask:
        inputs.append(_in("m", ["N", offset_group * 6, 4, 5]))
        names.append("m")
    nodes.append(helper.make_node("DeformConv", names, ["y"], kernel_shape=[3, 2], dilations=[1, 2], strides=[2, 1],
                                  pads=[1, 0, 1, 1], group=group, offset_group=offset_group))
    convert_ok(_model(nodes, inputs, [_out()], 19, [("w", w), ("b", b)]), tmp_path)


# ---- MaxUnpool, Col2Im, CenterCropPad ----------------------------------------------------------------------------
def _pool_indices(shape: tuple, kernel: int, stride: int, out_hw: tuple) -> np.ndarray:
    """Flat indices (over the whole [N, C, *out_hw] tensor) of one random element per pooling window."""
    n, c, h, w = shape
    rng = np.random.default_rng(1)
    rows = np.arange(h)[:, None] * stride + rng.integers(0, kernel, (n, c, h, w))
    cols = np.arange(w)[None, :] * stride + rng.integers(0, kernel, (n, c, h, w))
    planes = np.arange(n * c).reshape(n, c, 1, 1) * out_hw[0] * out_hw[1]
    return (planes + rows * out_hw[1] + cols).astype(np.int64)


@pytest.mark.parametrize("output_shape", [None, (2, 3, 7, 8)])
def test_max_unpool(tmp_path, output_shape):
    """Without output_shape the size is (in - 1) * stride - pads + kernel; with it, the indices address that shape
    (ONNX Runtime's reading, which is MaxPool's over an input of that shape)."""
    out_hw = output_shape[2:] if output_shape else (6, 6)
    idx = _pool_indices((2, 3, 3, 3), 2, 2, out_hw)
    inits = [("i", idx)] + ([("s", np.array(output_shape, np.int64))] if output_shape else [])
    node = helper.make_node("MaxUnpool", ["x", "i"] + (["s"] if output_shape else []), ["y"], kernel_shape=[2, 2],
                            strides=[2, 2])
    convert_ok(_model([node], [_in("x", [2, 3, 3, 3])], [_out()], 11, inits), tmp_path, batched=False)


@pytest.mark.parametrize("image, block, attrs", [
    ([5, 6], [2, 3], {}),
    ([6, 7], [3, 2], {"strides": [2, 1], "pads": [1, 0, 0, 2], "dilations": [1, 2]}),
    ([3, 4, 5], [2, 2, 3], {"strides": [1, 2, 1], "pads": [0, 1, 1, 1, 0, 0]}),
])
def test_col2im(tmp_path, image, block, attrs):
    n = len(image)
    strides, dil = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    pads = attrs.get("pads", [0] * 2 * n)
    blocks = [(image[a] + pads[a] + pads[a + n] - dil[a] * (block[a] - 1) - 1) // strides[a] + 1 for a in range(n)]
    shape = ["N", 3 * int(np.prod(block)), int(np.prod(blocks))]
    node = helper.make_node("Col2Im", ["x", "image", "block"], ["y"], **attrs)
    inits = [("image", np.array(image, np.int64)), ("block", np.array(block, np.int64))]
    convert_ok(_model([node], [_in("x", shape)], [_out("y", n + 2)], 18, inits), tmp_path)


@pytest.mark.parametrize("shape, axes", [([12, 5], [1, 2]), ([7, 10, 2], None), ([4], [-1])])
def test_center_crop_pad(tmp_path, shape, axes):
    x_shape = ["N", 9, 8, 2]
    full = shape if axes is not None else [3, *shape]  # without axes every axis, the batch's too (static here)
    node = helper.make_node("CenterCropPad", ["x", "s"], ["y"], **({"axes": axes} if axes is not None else {}))
    inputs = [_in("x", x_shape if axes is not None else [3, 9, 8, 2])]
    convert_ok(_model([node], inputs, [_out()], 18, [("s", np.array(full, np.int64))]), tmp_path,
               batched=axes is not None)


# ---- RoiAlign, MaxRoiPool ---------------------------------------------------------------------------------------
def _batch_indices(rois: int) -> list:
    """batch_indices alternating 0 and N - 1, computed from the input's runtime batch."""
    return [helper.make_node("Shape", ["x"], ["shape"]), _const("zero", np.array([0], np.int64)),
            _const("one", np.array([1], np.int64)), helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
            helper.make_node("Sub", ["batch", "one"], ["last"]), _const("alt", np.arange(rois, dtype=np.int64) % 2),
            helper.make_node("Mul", ["alt", "last"], ["bi"])]


def _boxes(scale: float, centre: float, ordered: bool) -> list:
    """[6, 4] boxes (x1, y1, x2, y2) from inputs s and e (both [6, 2]): corners spread around `centre`, extents
    |e| * scale when `ordered`, else e * scale (reversed boxes too)."""
    return [*_scale("s", scale, "spread"), _const("centre", np.float32(centre)),
            helper.make_node("Add", ["spread", "centre"], ["first"]),
            *([helper.make_node("Abs", ["e"], ["size"])] if ordered else [helper.make_node("Identity", ["e"], ["size"])]),
            *_scale("size", scale, "extent"), helper.make_node("Add", ["first", "extent"], ["second"]),
            helper.make_node("Concat", ["first", "second"], ["boxes"], axis=1)]


@pytest.mark.parametrize("opset, ctm, mode, ratio", [(16, "half_pixel", "avg", 2), (16, "half_pixel", "avg", 0),
                                                     (16, "output_half_pixel", "max", 0),
                                                     (16, "half_pixel", "max", 3), (10, None, "avg", 0),
                                                     (10, None, "max", 2)])
def test_roi_align(tmp_path, opset, ctm, mode, ratio):
    """ROIs are graph inputs spread over the 12x10 map and beyond its border. With sampling_ratio 0 each ROI
    needs its own number of samples; reversed ROIs are left out there, as ONNX Runtime overflows on them."""
    attrs = {"mode": mode, "output_height": 3, "output_width": 4, "sampling_ratio": ratio, "spatial_scale": 0.5}
    if ctm:
        attrs["coordinate_transformation_mode"] = ctm
    nodes = [*_batch_indices(6), *_boxes(6.0, 10.0, ordered=ratio == 0 and ctm == "half_pixel"),
             helper.make_node("RoiAlign", ["x", "boxes", "bi"], ["y"], **attrs)]
    model = _model(nodes, [_in("x", ["N", 3, 12, 10]), _in("s", [6, 2]), _in("e", [6, 2])], [_out()], opset)
    convert_ok(model, tmp_path)


def test_max_roi_pool(tmp_path):
    """Over ReLU features, as in detectors: ONNX Runtime starts each bin's max at FLT_MIN (the smallest positive
    float, not the lowest), so windows of only negative values would differ from ONNX's max."""
    nodes = [*_boxes(5.0, 8.0, ordered=False), helper.make_node("Relu", ["x"], ["features"]),
             helper.make_node("Concat", ["b", "boxes"], ["rois"], axis=1),
             helper.make_node("MaxRoiPool", ["features", "rois"], ["y"], pooled_shape=[3, 2], spatial_scale=0.6)]
    batch = np.array([[0], [1], [1], [0], [1], [0]], np.float32)
    model = _model(nodes, [_in("x", [2, 3, 11, 12]), _in("s", [6, 2]), _in("e", [6, 2])], [_out()], 12,
                   [("b", batch)])
    convert_ok(model, tmp_path, batched=False)


# ---- NonMaxSuppression --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("center, limit, iou, floor", [(0, 3, 0.3, 0.2), (1, 2, 0.5, None), (0, 100, 0.0, -0.5),
                                                       (0, 4, 1.0, None)])
def test_non_max_suppression(tmp_path, center, limit, iou, floor):
    """Random boxes (flipped corners, negative sizes) and scores over a dynamic batch and three classes; rows
    must come out exactly, in ONNX's (batch, class, score) order."""
    inits = [("limit", np.array([limit], np.int64)), ("iou", np.array([iou], np.float32))]
    names = ["boxes", "scores", "limit", "iou"]
    if floor is not None:
        inits.append(("floor", np.array([floor], np.float32)))
        names.append("floor")
    nodes = [*_scale("bx", 3.0, "boxes"),
             helper.make_node("NonMaxSuppression", names, ["y"], center_point_box=center)]
    model = _model(nodes, [_in("bx", ["N", 20, 4]), _in("scores", ["N", 3, 20])], [_out("y", 2, I64)],
                   11, inits)
    report = convert_ok(model, tmp_path)
    assert report.tf_ops["NonMaxSuppressionV3"] == 3  # one call per class


def test_non_max_suppression_runtime_thresholds(tmp_path):
    """Thresholds fed at run time (as the conformance tests do), over a class count left dynamic: one NMS call
    over every (batch, class), shifted apart, so the count is kept small (the shifts round IoUs in the last bits
    of float32)."""
    nodes = [_const("limit", np.array([2], np.int64)), helper.make_node("Abs", ["t"], ["iou_raw"]),
             _const("cap", np.float32(0.9)),
             helper.make_node("Min", ["iou_raw", "cap"], ["iou"]),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "t"], ["y"])]
    model = _model(nodes, [_in("boxes", [2, 12, 4]), _in("scores", [2, "C", 12]), _in("t", [1])],
                   [_out("y", 2, I64)], 11)
    report = convert_ok(model, tmp_path, batched=False, verify_dims={"C": (2, 3)})
    assert report.tf_ops["NonMaxSuppressionV3"] == 1


def test_non_max_suppression_without_limit_selects_nothing(tmp_path):
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["y"])
    model = _model([node], [_in("boxes", ["N", 5, 4]), _in("scores", ["N", 2, 5])], [_out("y", 2, I64)], 11)
    report = convert_ok(model, tmp_path)
    assert "NonMaxSuppressionV3" not in report.tf_ops


def test_dynamic_spatial_size_is_declined(tmp_path):
    """The samplers index a flattened [N * H * W, C] input with static strides."""
    node = helper.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], mode="avg")
    model = _model([node], [_in("x", [1, 2, "H", "W"]), _in("rois", [3, 4]), _in("bi", [3], I64)], [_out()], 16)
    with pytest.raises(UnsupportedModel, match="RoiAlign over a dynamic spatial size"):
        graphport.convert(model, tmp_path / "out", verify_outputs=False)
