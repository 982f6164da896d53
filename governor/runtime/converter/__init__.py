"""Convert any traceable PyTorch CNN into a dynamic group network (``governor convert``).

Three steps: ``fxgraph.trace`` turns the module into known ops, ``channels.analyse`` finds which
channels are coupled and the group each joins, and :func:`convert` stores every tensor group-major
and builds a ``GraphNet`` whose k = G sub-network is the original module (slimmable connectivity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from governor.core.modelgraph import GraphNode, GraphSpec
from governor.runtime.converter.channels import Layout, Order, analyse
from governor.runtime.converter.fxgraph import ConversionError, RawNode, trace
from governor.runtime.graphnet import PRIVATE_BN, GraphNet

__all__ = ["CONNECTIVITIES", "ConversionError", "convert"]

CONNECTIVITIES = ("slimmable", "grouped", "nested")


def _permuted(node: RawNode, name: str, t: torch.Tensor, layout: Layout, source: str | None) -> torch.Tensor:
    """``t`` with its channel axes in the stored (group-major) order."""
    own = layout.order.get(node.name)
    if node.op == "constant":
        axis = layout.axis.get(node.name)
        return t if own is None or axis is None else t.index_select(axis, torch.from_numpy(own))
    assert own is not None
    t = t.index_select(0, torch.from_numpy(own))
    reads_all = node.op == "linear" or (node.op == "conv2d" and int(node.attrs["groups"]) == 1)
    if name == "weight" and reads_all and source is not None:
        t = t.index_select(1, torch.from_numpy(layout.order[source]))
    return t


def _gather_index(node: RawNode, layout: Layout) -> torch.Tensor:
    assert node.gather is not None
    source = node.inputs[0]
    stored_of = np.empty_like(layout.order[source])
    stored_of[layout.order[source]] = np.arange(len(stored_of))
    return torch.from_numpy(stored_of[node.gather[layout.order[node.name]]].astype(np.int64))


def _spec_and_tensors(nodes: list[RawNode], output: str, layout: Layout, groups: int,
                      source: str) -> tuple[GraphSpec, dict[str, torch.Tensor]]:
    specs, tensors = [], {}
    for node in nodes:
        stored = {name: _permuted(node, name, t, layout, node.inputs[0] if node.inputs else None)
                  for name, t in node.tensors.items()}
        if node.op == "gather":
            stored["index"] = _gather_index(node, layout)
        if node.op == "batch_norm":
            rows = groups - 1
            for private, shared in zip(PRIVATE_BN, ("weight", "bias", "running_mean", "running_var"), strict=True):
                stored[private] = stored[shared].unsqueeze(0).repeat(rows, 1)
        for name, t in stored.items():
            tensors[f"graph.{node.name}.{name}"] = t.contiguous()
        axis = layout.axis.get(node.name)
        specs.append(GraphNode(
            name=node.name, op=node.op, inputs=tuple(node.inputs), attrs=node.attrs,
            tensors={name: tuple(t.shape) for name, t in stored.items()},
            active=layout.active.get(node.name, ()), channel_axis=axis if axis is not None else 1,
        ))
    return GraphSpec(source=source, nodes=tuple(specs), output=output), tensors


def convert(module: torch.nn.Module, input_shape: Sequence[int], *, groups: int = 4,
            connectivity: str = "slimmable", order: Order = "l1", mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None, source: str = "python") -> GraphNet:
    """A dynamic network of ``groups`` channel groups whose k = G sub-network computes ``module``
    (slimmable), or its grouped / nested form (``governor.runtime.graphblocks``), which runs fewer
    blocks of each weight and must be fine-tuned (``governor train --from``) before it is useful.

    ``input_shape`` is (C, H, W) of one sample; ``mean``/``std`` (per input channel) are applied
    inside the network before the module's first layer (default: none, i.e. 0 and 1). ``order``
    puts the channels the network needs most in group 1 (weight L1 norm, batch-norm scale, or as
    found). Raises ConversionError naming the graph node for anything it cannot convert exactly.
    """
    if connectivity not in CONNECTIVITIES:
        raise ConversionError(f"connectivity {connectivity!r} is not available for converted networks; "
                              f"choose one of {', '.join(CONNECTIVITIES)}")
    if groups < 1:
        raise ConversionError(f"groups must be >= 1, got {groups}")
    if order not in ("l1", "bn", "none"):
        raise ConversionError(f"order {order!r}: choose l1, bn or none")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConversionError(f"input shape {input_shape} must be C,H,W (three positive integers)")
    was_training = module.training
    try:
        nodes, output = trace(module, (shape[0], shape[1], shape[2]))
    finally:
        module.train(was_training)
    layout = analyse(nodes, output, groups, order)
    spec, tensors = _spec_and_tensors(nodes, output, layout, groups, source)
    channels = shape[0]
    net = GraphNet(spec, groups=groups, input_shape=(shape[0], shape[1], shape[2]),
                   mean=tuple(mean) if mean is not None else (0.0,) * channels,
                   std=tuple(std) if std is not None else (1.0,) * channels)
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    extra = [m for m in missing if not m.startswith("input_")]
    if extra or unexpected:
        raise ConversionError(f"internal: converted tensors do not match the graph ({extra[:3]}, {unexpected[:3]})")
    if connectivity != "slimmable":
        try:
            net = net.with_connectivity(connectivity)
        except ValueError as exc:
            raise ConversionError(str(exc)) from exc
    return net.eval()
