"""onnx.backend API over graphport, so ONNX's own conformance suite (onnx.backend.test) can grade the converter.

`prepare` runs the same pipeline as `graphport convert` (load, lift, optimize, emit) and executes the emitted
GraphDef in a TF1 session, so a passing backend test means the converted graph itself is right. The session lives in
a worker process (with the environment's oneDNN setting), so a kernel that crashes fails one test, not the suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from graphport.emit.tf import build_graph_def
from graphport.ir.from_onnx import load_model, to_ir
from graphport.passes import optimize
from graphport.runtime.isolated import IsolatedGraph
from graphport.runtime.reference import reference_session


class GraphportRep(BackendRep):
    """A converted model: positional or named inputs in, outputs in graph-output order."""

    def __init__(self, runner: IsolatedGraph, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.runner, self.input_names, self.output_names = runner, inputs, outputs

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feeds = {k: np.asarray(v) for k, v in inputs.items()}
        else:
            if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            if len(inputs) != len(self.input_names):
                raise ValueError(f"the model takes {len(self.input_names)} inputs, got {len(inputs)}")
            feeds = {name: np.asarray(v) for name, v in zip(self.input_names, inputs)}
        out = self.runner.run({k: v for k, v in feeds.items() if k in self.runner.inputs})
        return tuple(out[name] for name in self.output_names)


class GraphportBackend(Backend):
    """CPU only: the emitted graph targets TF's CPU kernels (as the TF C API hosts graphport serves)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> GraphportRep:
        if not cls.supports_device(device):
            raise RuntimeError(f"graphport runs on CPU only, not on '{device}'")
        proto, _ = load_model(model, second_opinion=reference_session)
        graph = optimize(to_ir(proto))
        emitted = build_graph_def(graph)
        runner = IsolatedGraph(emitted.graph_def, emitted.inputs, emitted.outputs)
        init = {t.name for t in proto.graph.initializer}
        inputs = [i.name for i in proto.graph.input if i.name not in init]  # positional order is the model's
        return GraphportRep(runner, inputs, [o.name for o in proto.graph.output])

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        raise NotImplementedError("graphport converts whole models; use prepare/run_model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = GraphportBackend.prepare
run_model = GraphportBackend.run_model
supports_device = GraphportBackend.supports_device
