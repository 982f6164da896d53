"""``governor export --onnx``: one ONNX file per k, each checked in onnxruntime against torch.

Each file is the k-group sub-network alone, with static shapes (batch 1 by default), the input
named ``input`` (raw samples: the model's normalisation is inside) and the output ``logits``; this
is what a TensorRT engine per k is built from on a Jetson (``trtexec --onnx=model_k2.onnx``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from governor.runtime.graphnet import GraphNet
from governor.runtime.nets import DynamicNet

__all__ = ["ExportError", "Exported", "export_onnx"]


class ExportError(RuntimeError):
    """An export failed; the message says which k and why."""


@dataclass(frozen=True)
class Exported:
    k: int
    path: Path
    max_abs_error: float  # onnxruntime vs torch, on one random batch
    bytes: int


class _AtK(nn.Module):
    """The network at a fixed k, so the trace holds that sub-network only."""

    def __init__(self, net: DynamicNet, k: int):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.set_active_groups(self.k)
        out: torch.Tensor = self.net(x)
        return out


def _onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice is not the user's concern
        # The legacy (TorchScript) exporter needs only onnx; a BytesIO is a documented target.
        torch.onnx.export(module, (x,), buffer, input_names=["input"],  # type: ignore[arg-type]
                          output_names=["logits"], opset_version=17, dynamo=False)
    return buffer.getvalue()


def export_onnx(net: DynamicNet, directory: Path, ks: list[int], *, stem: str = "model", batch: int = 1,
                seed: int = 0) -> list[Exported]:
    """Write ``directory/{stem}_k{k}.onnx`` for each k and check it in onnxruntime (CPU)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("onnxruntime is not installed; pip install 'dnn-governor[onnx]'") from exc
    directory.mkdir(parents=True, exist_ok=True)
    previous, was_training = net.active_groups, net.training
    graph = net if isinstance(net, GraphNet) else None
    cache = graph.cache_corners if graph is not None else True
    net.eval()
    if graph is not None:
        graph.cache_corners = False
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *net.input_shape, generator=gen) * net.input_std + net.input_mean
    out = []
    try:
        for k in ks:
            net.set_active_groups(k)
            with torch.no_grad():
                expected = net(x).numpy()
            try:
                data = _onnx_bytes(_AtK(net, k).eval(), x)  # a wrapper in train mode would be restored to it
            except Exception as exc:  # the exporter raises many types
                raise ExportError(f"k={k}: torch.onnx.export failed ({type(exc).__name__}: {exc})") from exc
            path = directory / f"{stem}_k{k}.onnx"
            path.write_bytes(data)
            session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            got = session.run(["logits"], {"input": x.numpy()})[0]
            out.append(Exported(k, path, float(np.abs(got - expected).max()), len(data)))
    finally:
        net.set_active_groups(previous)
        net.train(was_training)
        if graph is not None:
            graph.cache_corners = cache
    return out
