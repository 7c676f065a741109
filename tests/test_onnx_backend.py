"""ONNX's own backend conformance suite, run against graphport's converted TF graphs.

Only node tests of ops that graphport registers a handler for are included (a test for an unclaimed op would only
measure the op list), plus the pytorch-converted and pytorch-operator model tests, which exercise older opsets
(6-9) the way real exported models use them. `real` models need downloads and `simple` ones test sequences and
strings, so both are left out. Every known failure is listed in EXPECTED_FAILURES with its reason; a test that
starts passing shows up as an unexpected success, so the list cannot silently go stale.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

import onnx.backend.test
import onnx.defs
from onnx.backend.test.loader import load_model_tests

from graphport.backend import GraphportBackend
from graphport.emit.tf.registry import supported_ops

# Test-name spellings that neither the snake_case nor the run-together lower-case op name produce.
_NAME_ALIASES = {
    "BatchNormalization": ["batchnorm"], "InstanceNormalization": ["instancenorm"],
    "GreaterOrEqual": ["greater_equal"], "LessOrEqual": ["less_equal"],
}

_OPSET = "the test model declares opset 24+ (the op was revised after 23); graphport refuses opsets above 23"
_RUNTIME = " as a runtime input; graphport needs it constant"


def _exact(names: str) -> str:
    """A regex matching exactly the listed tests (names without `test_` and `_cpu`)."""
    return rf"^test_({'|'.join(map(re.escape, names.split()))})_cpu$"


# {test-name regex: why it fails}. Patterns are searched in the generated names (which end in `_cpu`).
EXPECTED_FAILURES: dict[str, str] = {
    r"^test_(cast|castlike|celu|constant|constantofshape|flatten|mod|range|reduce_log_sum|reduce_log_sum_exp"
    r"|reshape|shape|size|squeeze|transpose|unsqueeze)(_.*)?_cpu$": _OPSET,
    r"^test_identity(_sequence)?_cpu$": _OPSET,
    r"^test_(edge|reflect|wrap)_pad_cpu$": _OPSET,
    _exact('basic_conv_with_padding basic_conv_without_padding conv_with_autopad_same '
           'conv_with_strides_and_asymmetric_padding conv_with_strides_no_padding conv_with_strides_padding'):
        "the test feeds Conv's W" + _RUNTIME,
    _exact('batchnorm_epsilon batchnorm_example'):
        "the test feeds BatchNormalization's scale/B/mean/var" + _RUNTIME,
    _exact('dropout_default_mask_ratio dropout_default_ratio training_dropout training_dropout_default '
           'training_dropout_default_mask training_dropout_mask training_dropout_zero_ratio '
           'training_dropout_zero_ratio_mask'):
        "the test feeds Dropout's ratio/training_mode" + _RUNTIME,
    _exact('instancenorm_epsilon instancenorm_example'):
        "the test feeds InstanceNormalization's scale/B" + _RUNTIME,
    _exact('reduce_l1_default_axes_keepdims_example reduce_l1_default_axes_keepdims_random '
           'reduce_l1_do_not_keepdims_example reduce_l1_do_not_keepdims_random reduce_l1_empty_set '
           'reduce_l1_keep_dims_example reduce_l1_keep_dims_random reduce_l1_negative_axes_keep_dims_example '
           'reduce_l1_negative_axes_keep_dims_random'):
        "the test feeds ReduceL1's axes" + _RUNTIME,
    _exact('reduce_l1_default_axes_keepdims_example_expanded reduce_l1_default_axes_keepdims_random_expanded '
           'reduce_l1_do_not_keepdims_example_expanded reduce_l1_do_not_keepdims_random_expanded '
           'reduce_l1_empty_set_expanded reduce_l1_keep_dims_example_expanded '
           'reduce_l1_keep_dims_random_expanded reduce_l1_negative_axes_keep_dims_example_expanded '
           'reduce_l1_negative_axes_keep_dims_random_expanded reduce_l2_default_axes_keepdims_example_expanded '
           'reduce_l2_default_axes_keepdims_random_expanded reduce_l2_do_not_keepdims_example_expanded '
           'reduce_l2_do_not_keepdims_random_expanded reduce_l2_empty_set_expanded '
           'reduce_l2_keep_dims_example_expanded reduce_l2_keep_dims_random_expanded '
           'reduce_l2_negative_axes_keep_dims_example_expanded reduce_l2_negative_axes_keep_dims_random_expanded '
           'reduce_sum_default_axes_keepdims_example reduce_sum_default_axes_keepdims_random '
           'reduce_sum_do_not_keepdims_example reduce_sum_do_not_keepdims_random '
           'reduce_sum_empty_axes_input_noop reduce_sum_empty_axes_input_noop_example reduce_sum_empty_set '
           'reduce_sum_empty_set_non_reduced_axis_zero reduce_sum_keepdims_example reduce_sum_keepdims_random '
           'reduce_sum_negative_axes_keepdims_example reduce_sum_negative_axes_keepdims_random '
           'reduce_sum_square_default_axes_keepdims_example_expanded '
           'reduce_sum_square_default_axes_keepdims_random_expanded '
           'reduce_sum_square_do_not_keepdims_example_expanded reduce_sum_square_do_not_keepdims_random_expanded '
           'reduce_sum_square_empty_set_expanded reduce_sum_square_keepdims_example_expanded '
           'reduce_sum_square_keepdims_random_expanded reduce_sum_square_negative_axes_keepdims_example_expanded '
           'reduce_sum_square_negative_axes_keepdims_random_expanded'):
        "the _expanded body feeds ReduceSum's axes" + _RUNTIME,
    _exact('reduce_l2_default_axes_keepdims_example reduce_l2_default_axes_keepdims_random '
           'reduce_l2_do_not_keepdims_example reduce_l2_do_not_keepdims_random reduce_l2_empty_set '
           'reduce_l2_keep_dims_example reduce_l2_keep_dims_random reduce_l2_negative_axes_keep_dims_example '
           'reduce_l2_negative_axes_keep_dims_random'):
        "the test feeds ReduceL2's axes" + _RUNTIME,
    _exact('reduce_max_bool_inputs reduce_max_do_not_keepdims_example reduce_max_do_not_keepdims_random '
           'reduce_max_empty_set_bool reduce_max_empty_set reduce_max_keepdims_example '
           'reduce_max_keepdims_random reduce_max_negative_axes_keepdims_example '
           'reduce_max_negative_axes_keepdims_random'):
        "the test feeds ReduceMax's axes" + _RUNTIME,
    _exact('reduce_mean_default_axes_keepdims_example reduce_mean_default_axes_keepdims_random '
           'reduce_mean_do_not_keepdims_example reduce_mean_do_not_keepdims_random reduce_mean_keepdims_example '
           'reduce_mean_keepdims_random reduce_mean_negative_axes_keepdims_example '
           'reduce_mean_negative_axes_keepdims_random'):
        "the test feeds ReduceMean's axes" + _RUNTIME,
    _exact('reduce_min_bool_inputs reduce_min_do_not_keepdims_example reduce_min_do_not_keepdims_random '
           'reduce_min_empty_set reduce_min_keepdims_example reduce_min_keepdims_random '
           'reduce_min_negative_axes_keepdims_example reduce_min_negative_axes_keepdims_random'):
        "the test feeds ReduceMin's axes" + _RUNTIME,
    _exact('reduce_prod_do_not_keepdims_example reduce_prod_do_not_keepdims_random reduce_prod_empty_set '
           'reduce_prod_keepdims_example reduce_prod_keepdims_random reduce_prod_negative_axes_keepdims_example '
           'reduce_prod_negative_axes_keepdims_random'):
        "the test feeds ReduceProd's axes" + _RUNTIME,
    _exact('reduce_sum_square_default_axes_keepdims_example reduce_sum_square_default_axes_keepdims_random '
           'reduce_sum_square_do_not_keepdims_example reduce_sum_square_do_not_keepdims_random '
           'reduce_sum_square_empty_set reduce_sum_square_keepdims_example reduce_sum_square_keepdims_random '
           'reduce_sum_square_negative_axes_keepdims_example reduce_sum_square_negative_axes_keepdims_random'):
        "the test feeds ReduceSumSquare's axes" + _RUNTIME,
    _exact('slice slice_default_axes slice_default_steps slice_end_out_of_bounds slice_neg slice_neg_steps '
           'slice_negative_axes slice_start_out_of_bounds'):
        "the test feeds Slice's starts/ends/axes/steps" + _RUNTIME,
    _exact('split_variable_parts_1d_opset13 split_variable_parts_1d_opset18 split_variable_parts_2d_opset13 '
           'split_variable_parts_2d_opset18 split_variable_parts_default_axis_opset13 '
           'split_variable_parts_default_axis_opset18 split_zero_size_splits_opset13 '
           'split_zero_size_splits_opset18'):
        "the test feeds Split's split" + _RUNTIME,
    _exact('ConvTranspose2d ConvTranspose2d_no_bias operator_convtranspose'):
        'ConvTranspose: graphport has no converter for it yet',
    _exact('MaxPool1d_stride_padding_dilation MaxPool2d_stride_padding_dilation maxpool_2d_dilations '
           'maxpool_3d_dilations maxpool_3d_dilations_use_ref_impl maxpool_3d_dilations_use_ref_impl_large '
           'averagepool_2d_dilations averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False '
           'averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True '
           'averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False '
           'averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True '
           'averagepool_3d_dilations_small'):
        "dilated pooling: TF's pool kernels have no dilation (declined, not emulated)",
    _exact('batchnorm_epsilon_training_mode batchnorm_example_training_mode'):
        'BatchNormalization training_mode=1 (batch statistics and running-mean outputs) is declined',
    _exact('maxpool_with_argmax_2d_precomputed_pads maxpool_with_argmax_2d_precomputed_strides'):
        "MaxPool's Indices output (ONNX row-major argmax) is declined",
    _exact('identity_opt'):
        'Identity over an optional type: graphport handles tensors only',
}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def op_name_forms(op_type: str) -> set[str]:
    """The spellings ONNX's node test names use for an op (ReduceMean -> reduce_mean, ArgMax -> argmax)."""
    return {_snake(op_type), op_type.lower(), *_NAME_ALIASES.get(op_type, [])}


def node_test_op(test_name: str) -> str | None:
    """The ONNX op a node test exercises: the op whose spelling is the longest prefix of the test name, so that
    test_gather_elements_0 belongs to GatherElements rather than Gather."""
    best, best_len = None, 0
    for op_type, forms in _all_op_forms().items():
        for form in forms:
            if (test_name == f"test_{form}" or test_name.startswith(f"test_{form}_")) and len(form) > best_len:
                best, best_len = op_type, len(form)
    return best


@functools.cache
def _all_op_forms() -> dict[str, set[str]]:
    ops = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
    return {op: op_name_forms(op) for op in ops}


def _model_op(case: Any) -> str | None:
    """For names that spell no op (test_and2d, test_basic_conv_with_padding): the single op type in the model."""
    model = case.model if case.model is not None else \
        onnx.load(os.path.join(case.model_dir, "model.onnx")) if case.model_dir else None
    ops = {n.op_type for n in model.graph.node} if model is not None else set()
    return ops.pop() if len(ops) == 1 else None


@functools.cache
def claimed_node_tests() -> tuple[list[str], list[str]]:
    """(node tests of ops in graphport's registry, node tests of every other op or of no single op)."""
    claimed = set(supported_ops())
    ours, other = [], []
    for t in load_model_tests(kind="node"):
        op_type = node_test_op(t.name) or _model_op(t)
        (ours if op_type in claimed else other).append(t.name)
    return ours, other


def _names_pattern(names: list[str]) -> str:
    return rf"^({'|'.join(map(re.escape, sorted(names)))})_cpu$"


def model_test_pattern() -> str:
    """The pytorch-converted and pytorch-operator model tests (older opsets, as exported by torch)."""
    return _names_pattern([t.name for kind in ("pytorch-converted", "pytorch-operator")
                           for t in load_model_tests(kind=kind)])


def excluded_model_pattern() -> str:
    """`real` (downloads) and `simple` (sequence/string models) tests, whose names can look like node tests."""
    return _names_pattern([t.name for kind in ("real", "simple") for t in load_model_tests(kind=kind)])


backend_test = onnx.backend.test.BackendTest(GraphportBackend, __name__)
backend_test.include(_names_pattern(claimed_node_tests()[0]))
backend_test.include(model_test_pattern())
backend_test.exclude(excluded_model_pattern())
for _pattern in EXPECTED_FAILURES:
    backend_test.xfail(_pattern)

globals().update(backend_test.enable_report().test_cases)
