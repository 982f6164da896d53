"""The graph of a converted network, stored as data in the model file (no code, no pickle).

A converted model (``governor convert``) is a list of nodes in execution order. Each node names one
op from :data:`OPS`, its input nodes, its constant attributes and the shapes of the tensors it owns
(stored in the file as ``tensors/<node>.<tensor>.npy``). The runtime interprets the list
(``governor.runtime.graphnet``); an op outside :data:`OPS` is refused when the file is read, so a
file can never make the runtime import or call anything it does not already have.

Channels and groups (slimmable connectivity): every tensor with a channel axis stores its channels
group-major, i.e. the channels of group 1 first, then group 2 and so on, so the k-group sub-network
uses a prefix of every channel axis. ``active[k-1]`` is that prefix's length at k (``active[-1]`` is
all of them). Weights are stored in the same order on both of their channel axes, so the k-group
weight is the top-left corner (Yu et al., Slimmable Networks, ICLR 2019) and k = G is the original
network. Gathers (channel splits and shuffles) carry a per-k index of the input positions they read.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["OPS", "GraphNode", "GraphSpec", "unknown_ops"]

Attr = int | float | bool | str | None | tuple[int, ...] | tuple[float, ...]

# op -> what it does (docs/models.md lists them with their attributes)
OPS: Final[dict[str, str]] = {
    "input": "the network's input (after the model's normalisation)",
    "conv2d": "2-D convolution; attrs stride, padding, dilation, groups (of the original), bias",
    "linear": "fully connected layer over the channel axis (the last axis)",
    "batch_norm": "batch norm over axis 1, with private statistics and affine per k < G",
    "layer_norm": "layer norm over the channel axis (the last axis)",
    "relu": "max(x, 0)", "relu6": "min(max(x, 0), 6)", "hardswish": "x * relu6(x + 3) / 6",
    "hardsigmoid": "relu6(x + 3) / 6", "sigmoid": "1 / (1 + exp(-x))", "silu": "x * sigmoid(x)",
    "gelu": "Gaussian error linear unit (attr approximate)", "tanh": "tanh(x)",
    "add": "elementwise sum of two tensors (broadcasting)", "mul": "elementwise product (broadcasting)",
    "add_scalar": "x + attr value", "mul_scalar": "x * attr value",
    "cat": "concatenation along the channel axis, group by group",
    "gather": "channels of the input at the stored per-k positions (a split part or a shuffle)",
    "flatten": "(N, C, H, W) -> (N, C*H*W), channel-major",
    "permute": "axis permutation (attr dims); moves the channel axis",
    "max_pool2d": "max pooling (kernel, stride, padding, dilation, ceil_mode)",
    "avg_pool2d": "average pooling (kernel, stride, padding, ceil_mode, count_include_pad)",
    "adaptive_avg_pool2d": "average pooling to a fixed output size (attr size)",
    "mean": "mean over the spatial axes (attr dims, keepdim)",
    "constant": "a stored tensor (e.g. a layer scale), its channel axis group-major",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GraphNode(_Frozen):
    """One op of the converted network, in execution order."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    op: str
    inputs: tuple[str, ...] = ()
    attrs: dict[str, Attr] = Field(default_factory=dict)
    tensors: dict[str, tuple[int, ...]] = Field(default_factory=dict)  # stored tensor -> shape
    # length of the active channel prefix of this node's output at k = 1..G; empty: no channel axis
    active: tuple[int, ...] = ()
    channel_axis: int = 1  # of the output (3 after a permute to channels-last)


class GraphSpec(_Frozen):
    """A converted network: nodes in execution order, the output node and where it came from."""

    source: str  # e.g. "torchvision:resnet18" or "mypkg.nets:build"
    nodes: tuple[GraphNode, ...]
    output: str

    @model_validator(mode="after")
    def _wired(self) -> GraphSpec:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ValueError(f"graph node {node.name!r} appears twice")
            missing = [i for i in node.inputs if i not in seen]
            if missing:
                raise ValueError(f"graph node {node.name!r} reads {missing}, which no earlier node produces")
            seen.add(node.name)
        if self.output not in seen:
            raise ValueError(f"graph output {self.output!r} is not a node")
        return self


def unknown_ops(spec: GraphSpec) -> list[str]:
    """Nodes whose op this governor does not have, as 'node (op)'; empty when every op is known."""
    return [f"{n.name} ({n.op})" for n in spec.nodes if n.op not in OPS]
