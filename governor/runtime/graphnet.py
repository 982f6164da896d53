"""The runtime of a converted network: interprets a ``GraphSpec`` (governor.core.modelgraph) at k groups.

Slimmable connectivity: every channel axis is stored group-major, so the k-group sub-network runs
each weight's top-left corner and a prefix of every activation; k = G is the original network. A
corner of a weight is strided, and oneDNN runs strided weights several times slower, so outside
autograd the contiguous corner is cached per (tensor, k) and rebuilt when the tensor changes
(``Tensor._version``). Batch norm at k < G uses its own statistics and affine (``k_*`` tensors, one
row per k), which only ``governor train --from`` changes; k = G uses the original ones.

Grouped and nested connectivity (``governor.runtime.graphblocks``): a weight runs as one convolution
per output group over the input groups that group reads, and the results are concatenated; batch
norm keeps one set of statistics, and while group j trains, the channels of groups < j run in eval
mode so their statistics never move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from governor.core.modelgraph import OPS, GraphNode, GraphSpec, unknown_ops
from governor.core.modelmeta import LayerCost, layer_cost
from governor.runtime.graphblocks import (
    BLOCKED,
    Block,
    blocking_problem,
    conv_groups,
    is_grouped,
    owner,
    weight_blocks,
)
from governor.runtime.nets import DynamicNet

__all__ = ["BUFFERS", "PRIVATE_BN", "GraphNet"]

BUFFERS = frozenset({"running_mean", "running_var", "k_mean", "k_var", "index"})
PRIVATE_BN = ("k_weight", "k_bias", "k_mean", "k_var")


def _ints(value: object) -> tuple[int, ...]:
    """An attribute that the schema stores as a tuple of integers."""
    assert isinstance(value, tuple | list)
    return tuple(int(v) for v in value)


def _conv_out_hw(node: GraphNode, in_hw: tuple[int, int], kernel: tuple[int, int]) -> tuple[int, int]:
    """A convolution's output size per axis (floor mode), with its own stride, padding and dilation."""
    stride, padding, dilation = (_ints(node.attrs[a]) for a in ("stride", "padding", "dilation"))
    h, w = ((n + 2 * p - d * (kk - 1) - 1) // s + 1
            for n, kk, s, p, d in zip(in_hw, kernel, stride, padding, dilation, strict=True))
    return (h, w)


class _Store(nn.Module):
    """The tensors of one node, as parameters (learnable) and buffers (statistics, indices)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        for name, shape in shapes.items():
            if name == "index":
                self.register_buffer(name, torch.zeros(shape, dtype=torch.int64))
            elif name in BUFFERS:
                self.register_buffer(name, torch.zeros(shape))
            else:
                self.register_parameter(name, nn.Parameter(torch.zeros(shape)))

    def get(self, name: str) -> Tensor:
        value: Tensor = getattr(self, name)
        return value


Step = Callable[[int, list[Tensor]], Tensor]


class GraphNet(DynamicNet):
    """A converted network (``governor convert``); ``set_active_groups(k)`` picks the sub-network."""

    def __init__(self, spec: GraphSpec, *, groups: int, input_shape: tuple[int, int, int], classes: int = 0,
                 mean: Sequence[float], std: Sequence[float], connectivity: str = "slimmable"):
        super().__init__(groups, input_shape, mean, std)
        unknown = unknown_ops(spec)
        if unknown:
            raise ValueError(f"the graph uses ops this governor does not have: {', '.join(unknown[:3])}; "
                             "upgrade dnn-governor or convert the model again")
        if connectivity not in ("slimmable", *BLOCKED):
            raise ValueError(f"connectivity {connectivity!r}: choose slimmable, grouped or nested")
        problem = blocking_problem(spec) if connectivity in BLOCKED else None
        if problem:
            raise ValueError(f"{connectivity} connectivity is not possible: {problem}")
        self.spec, self.connectivity = spec, connectivity
        self.graph = nn.ModuleDict({n.name: _Store(n.tensors) for n in spec.nodes if n.tensors})
        self._index = {n.name: i for i, n in enumerate(spec.nodes)}
        self._steps = [(self._step(n), [self._index[i] for i in n.inputs]) for n in spec.nodes]
        self._out = self._index[spec.output]
        self._corners: dict[tuple[int, ...], tuple[int, Tensor]] = {}
        self.cache_corners = True  # off while exporting: a cached copy would become a duplicate constant
        self._record: list[LayerCost] | None = None
        self._gathers: dict[tuple[str, int], tuple[int, int] | None] = {}

    def with_connectivity(self, connectivity: str) -> GraphNet:
        """This slimmable network as grouped or nested: the same stored tensors (no private batch norm),
        each weight running only its blocks (``governor.runtime.graphblocks``). Raises ValueError where
        the graph does not allow it, with the node and what to do."""
        if self.connectivity != "slimmable" or connectivity not in BLOCKED:
            raise ValueError(f"a {self.connectivity} network cannot become {connectivity}; convert it again")
        nodes = tuple(n.model_copy(update={"tensors": {k: v for k, v in n.tensors.items() if k not in PRIVATE_BN}})
                      for n in self.spec.nodes)
        c, h, w = self.input_shape
        net = GraphNet(self.spec.model_copy(update={"nodes": nodes}), groups=self.groups,
                       input_shape=(c, h, w), mean=self.input_mean.flatten().tolist(),
                       std=self.input_std.flatten().tolist(), connectivity=connectivity)
        state = {k: v for k, v in self.state_dict().items() if k.rsplit(".", 1)[-1] not in PRIVATE_BN}
        net.load_state_dict(state)
        return net.train(self.training)

    # -- running -------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        k = self.active_groups
        values: list[Tensor] = []
        for (step, inputs), node in zip(self._steps, self.spec.nodes, strict=True):
            args = [values[i] for i in inputs]
            values.append(self.normalize(x) if node.op == "input" else step(k, args))
        return values[self._out]

    def tensor(self, node: str, name: str) -> Tensor:
        store = self.graph[node]
        assert isinstance(store, _Store)
        return store.get(name)

    def _corner(self, t: Tensor, rows: int, cols: int | None) -> Tensor:
        """``t[:rows, :cols]``, contiguous; cached outside autograd (see the module docstring)."""
        full = rows == t.shape[0] and (cols is None or cols == t.shape[1])
        if full:
            return t
        if cols is None:
            return t[:rows].contiguous() if not self.cache_corners else t[:rows]
        return self._block(t, (0, rows, 0, cols))

    def _block(self, t: Tensor, block: Block) -> Tensor:
        """``t[r0:r1, c0:c1]``, contiguous; cached outside autograd, rebuilt when ``t`` changes."""
        r0, r1, c0, c1 = block
        view = t[r0:r1, c0:c1]
        if torch.is_grad_enabled() or not self.cache_corners:
            return view.contiguous() if not self.cache_corners else view
        key = (id(t), *block)
        cached = self._corners.get(key)
        if cached is None or cached[0] != t._version:
            cached = (t._version, view.contiguous())
            self._corners[key] = cached
        return cached[1]

    def _blocks(self, node: GraphNode, k: int) -> list[Block] | None:
        """The blocks a weight layer runs at k under grouped or nested connectivity; None: its corner."""
        if self.connectivity not in BLOCKED or not is_grouped(node.active):
            return None
        if node.op == "conv2d" and conv_groups(node) != 1:
            return None  # depthwise / grouped: each convolution group is within one channel group already
        source = self._source_active(node)
        return weight_blocks(self.connectivity, node.active, source, k) if is_grouped(source) else None

    def _source_active(self, node: GraphNode) -> tuple[int, ...]:
        """The channel prefixes per k of the node's first input (the axis its weight reads)."""
        return self.spec.nodes[self._index[node.inputs[0]]].active

    def _active(self, name: str, k: int) -> int:
        return self.spec.nodes[self._index[name]].active[k - 1]

    def _step(self, node: GraphNode) -> Step:
        builder = getattr(self, f"_op_{node.op}", None)
        if builder is None:  # pragma: no cover - OPS and the builders are kept in step by a test
            raise ValueError(f"op {node.op!r} ({OPS.get(node.op)}) has no runtime")
        step: Step = builder(node)
        return step

    def _op_input(self, node: GraphNode) -> Step:
        return lambda k, a: a[0]

    def _op_conv2d(self, node: GraphNode) -> Step:
        at = node.attrs
        stride, padding, dilation = _ints(at["stride"]), _ints(at["padding"]), _ints(at["dilation"])
        original_groups = conv_groups(node)
        source = node.inputs[0]
        has_bias = "bias" in node.tensors

        def run(k: int, a: list[Tensor]) -> Tensor:
            w, n_out, n_in = self.tensor(node.name, "weight"), node.active[k - 1], self._active(source, k)
            bias = self.tensor(node.name, "bias") if has_bias else None
            blocks = self._blocks(node, k)
            if blocks is not None:
                def conv(x: Tensor, b: Block) -> Tensor:
                    return F.conv2d(x, self._block(w, b), None if bias is None else bias[b[0]:b[1]], stride,
                                    padding, dilation)
                return self._run_blocks(node, a[0], blocks, conv, w, has_bias)
            if original_groups == 1:
                weight, groups = self._corner(w, n_out, n_in), 1
            else:
                weight, groups = self._corner(w, n_out, None), n_in // w.shape[1]
            if self._record is not None:
                self._record_conv(node, a[0], weight, groups, bias is not None)
            return F.conv2d(a[0], weight, None if bias is None else bias[:n_out], stride, padding, dilation, groups)
        return run

    def _op_linear(self, node: GraphNode) -> Step:
        source, has_bias = node.inputs[0], "bias" in node.tensors

        def run(k: int, a: list[Tensor]) -> Tensor:
            w, n_out, n_in = self.tensor(node.name, "weight"), node.active[k - 1], self._active(source, k)
            bias = self.tensor(node.name, "bias") if has_bias else None
            blocks = self._blocks(node, k)
            if blocks is not None:
                def linear(x: Tensor, b: Block) -> Tensor:
                    return F.linear(x, self._block(w, b), None if bias is None else bias[b[0]:b[1]])
                return self._run_blocks(node, a[0], blocks, linear, w, has_bias)
            weight = self._corner(w, n_out, n_in)
            if self._record is not None:
                hw = tuple(a[0].shape[1:-1]) if a[0].dim() == 4 else (1, 1)
                self._record.append(layer_cost(node.name, kind="linear", connectivity="dense", k=k, in_channels=n_in,
                                               out_channels=n_out, in_hw=hw, bias=has_bias))  # type: ignore[arg-type]
            return F.linear(a[0], weight, None if bias is None else bias[:n_out])
        return run

    def _run_blocks(self, node: GraphNode, x: Tensor, blocks: list[Block], layer: Callable[[Tensor, Block], Tensor],
                    w: Tensor, bias: bool) -> Tensor:
        """One layer call per output group on the input groups it reads, concatenated on the channel axis
        (the stored weight keeps every block, unused ones too, so its slimmable form stays checkable)."""
        axis = 1 if node.op == "conv2d" else -1
        outs = []
        for b in blocks:
            if b[3] > b[2]:
                outs.append(layer(x.narrow(axis, b[2], b[3] - b[2]), b))
            else:  # a group that reads no input channel (its input group is empty): its bias, or zero
                outs.append(layer(x.narrow(axis, 0, 1) * 0, (b[0], b[1], 0, 1)))
        if self._record is not None:
            self._record_blocks(node, x, blocks, w, bias)
        return outs[0] if len(outs) == 1 else torch.cat(outs, axis)

    def _op_batch_norm(self, node: GraphNode) -> Step:
        eps, momentum = float(node.attrs["eps"]), float(node.attrs["momentum"])  # type: ignore[arg-type]
        G = self.groups

        shared = ("running_mean", "running_var", "weight", "bias")

        def run(k: int, a: list[Tensor]) -> Tensor:
            n = node.active[k - 1]
            if self.connectivity in BLOCKED:
                return blocked(k, a[0], [self.tensor(node.name, s)[:n] for s in shared])
            if k == G:
                t = [self.tensor(node.name, s) for s in shared]
            else:
                t = [self.tensor(node.name, s)[k - 1, :n] for s in ("k_mean", "k_var", "k_weight", "k_bias")]
            return F.batch_norm(a[0], t[0], t[1], t[2], t[3], self.training, momentum, eps)

        def blocked(k: int, x: Tensor, t: list[Tensor]) -> Tensor:
            frozen = node.active[k - 2] if self.training and k > 1 and self.group_state.training_group == k else 0
            if not frozen:
                return F.batch_norm(x, t[0], t[1], t[2], t[3], self.training, momentum, eps)
            # stage k: the finished groups' channels normalise with their statistics and leave them alone
            lo = [v[:frozen] for v in t]
            hi = [v[frozen:] for v in t]
            rest = x.shape[1] - frozen
            return torch.cat([F.batch_norm(x.narrow(1, 0, frozen), lo[0], lo[1], lo[2], lo[3], False, momentum, eps),
                              F.batch_norm(x.narrow(1, frozen, rest), hi[0], hi[1], hi[2], hi[3], True, momentum, eps)],
                             1)
        return run

    def _op_layer_norm(self, node: GraphNode) -> Step:
        eps = float(node.attrs["eps"])  # type: ignore[arg-type]

        def run(k: int, a: list[Tensor]) -> Tensor:
            n = node.active[k - 1]
            w, b = self.tensor(node.name, "weight")[:n], self.tensor(node.name, "bias")[:n]
            return F.layer_norm(a[0], (n,), w, b, eps)
        return run

    def _op_cat(self, node: GraphNode) -> Step:
        sources, axis = list(node.inputs), node.channel_axis

        def run(k: int, a: list[Tensor]) -> Tensor:
            if k == 1:
                return torch.cat(a, axis)
            parts = []
            for r in range(1, k + 1):
                for name, x in zip(sources, a, strict=True):
                    lo = 0 if r == 1 else self._active(name, r - 1)
                    hi = self._active(name, r)
                    if hi > lo:
                        parts.append(x.narrow(axis, lo, hi - lo))
            return torch.cat(parts, axis)
        return run

    def _op_gather(self, node: GraphNode) -> Step:
        axis = node.channel_axis

        def run(k: int, a: list[Tensor]) -> Tensor:
            n = node.active[k - 1]
            key = (node.name, k)
            if key not in self._gathers:
                index = self.tensor(node.name, "index")[:n]
                contiguous = bool((index == torch.arange(n) + index[0]).all()) if n else False
                self._gathers[key] = (int(index[0]), n) if contiguous else None
            run_span = self._gathers[key]
            if run_span is not None:
                return a[0].narrow(axis, run_span[0], run_span[1])
            return a[0].index_select(axis, self.tensor(node.name, "index")[:n])
        return run

    def _op_constant(self, node: GraphNode) -> Step:
        axis = node.channel_axis

        def run(k: int, a: list[Tensor]) -> Tensor:
            value = self.tensor(node.name, "value")
            return value.narrow(axis, 0, node.active[k - 1]) if node.active else value
        return run

    def _op_flatten(self, node: GraphNode) -> Step:
        return lambda k, a: a[0].flatten(1)

    def _op_permute(self, node: GraphNode) -> Step:
        dims = _ints(node.attrs["dims"])
        return lambda k, a: a[0].permute(dims)

    def _op_add(self, node: GraphNode) -> Step:
        return lambda k, a: a[0] + a[1]

    def _op_mul(self, node: GraphNode) -> Step:
        return lambda k, a: a[0] * a[1]

    def _op_add_scalar(self, node: GraphNode) -> Step:
        value = float(node.attrs["value"])  # type: ignore[arg-type]
        return lambda k, a: a[0] + value

    def _op_mul_scalar(self, node: GraphNode) -> Step:
        value = float(node.attrs["value"])  # type: ignore[arg-type]
        return lambda k, a: a[0] * value

    def _op_relu(self, node: GraphNode) -> Step:
        return lambda k, a: F.relu(a[0])

    def _op_relu6(self, node: GraphNode) -> Step:
        return lambda k, a: F.relu6(a[0])

    def _op_hardswish(self, node: GraphNode) -> Step:
        return lambda k, a: F.hardswish(a[0])

    def _op_hardsigmoid(self, node: GraphNode) -> Step:
        return lambda k, a: F.hardsigmoid(a[0])

    def _op_sigmoid(self, node: GraphNode) -> Step:
        return lambda k, a: torch.sigmoid(a[0])

    def _op_silu(self, node: GraphNode) -> Step:
        return lambda k, a: F.silu(a[0])

    def _op_tanh(self, node: GraphNode) -> Step:
        return lambda k, a: torch.tanh(a[0])

    def _op_gelu(self, node: GraphNode) -> Step:
        approximate = str(node.attrs.get("approximate", "none"))
        return lambda k, a: F.gelu(a[0], approximate=approximate)

    def _op_max_pool2d(self, node: GraphNode) -> Step:
        at: dict[str, Any] = node.attrs
        return lambda k, a: F.max_pool2d(a[0], at["kernel"], at["stride"], at["padding"], at["dilation"],
                                         at["ceil_mode"])

    def _op_avg_pool2d(self, node: GraphNode) -> Step:
        at: dict[str, Any] = node.attrs
        return lambda k, a: F.avg_pool2d(a[0], at["kernel"], at["stride"], at["padding"], at["ceil_mode"],
                                         at["count_include_pad"])

    def _op_adaptive_avg_pool2d(self, node: GraphNode) -> Step:
        size = _ints(node.attrs["size"])
        return lambda k, a: F.adaptive_avg_pool2d(a[0], (size[0], size[1]))

    def _op_mean(self, node: GraphNode) -> Step:
        dims, keep = _ints(node.attrs["dims"]), bool(node.attrs["keepdim"])
        return lambda k, a: a[0].mean(dims, keepdim=keep)

    # -- costs ---------------------------------------------------------------------------------------
    def _record_conv(self, node: GraphNode, x: Tensor, weight: Tensor, groups: int, bias: bool) -> None:
        assert self._record is not None
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        stride, padding = _ints(node.attrs["stride"]), _ints(node.attrs["padding"])
        in_hw = (int(x.shape[2]), int(x.shape[3]))
        cost = layer_cost(node.name, kind="conv", connectivity="dense", k=self.active_groups,
                          in_channels=int(x.shape[1]), out_channels=int(weight.shape[0]), kernel=(kh, kw),
                          stride=stride[0], padding=padding[0], in_hw=in_hw, bias=bias, conv_groups=groups,
                          out_hw=_conv_out_hw(node, in_hw, (kh, kw)))
        self._record.append(cost)

    def _record_blocks(self, node: GraphNode, x: Tensor, blocks: list[Block], w: Tensor, bias: bool) -> None:
        """One LayerCost for a grouped / nested layer: the sum of what its blocks compute and read."""
        assert self._record is not None
        conv = node.op == "conv2d"
        kh, kw = (int(w.shape[2]), int(w.shape[3])) if conv else (1, 1)
        stride = int(_ints(node.attrs["stride"])[0]) if conv else 1
        padding = int(_ints(node.attrs["padding"])[0]) if conv else 0
        hw = (int(x.shape[2]), int(x.shape[3])) if conv else tuple(x.shape[1:-1]) if x.dim() == 4 else (1, 1)
        out_hw = _conv_out_hw(node, hw, (kh, kw)) if conv else None  # type: ignore[arg-type]
        parts = [layer_cost(node.name, kind="conv" if conv else "linear", connectivity="dense", k=1,
                            in_channels=max(1, c1 - c0), out_channels=r1 - r0, kernel=(kh, kw), stride=stride,
                            padding=padding, in_hw=hw, bias=bias, out_hw=out_hw)  # type: ignore[arg-type]
                 for r0, r1, c0, c1 in blocks]
        whole = layer_cost(node.name, kind="conv" if conv else "linear", connectivity="dense", k=self.active_groups,
                           in_channels=int(x.shape[1 if conv else -1]), out_channels=blocks[-1][1], kernel=(kh, kw),
                           stride=stride, padding=padding, in_hw=hw, bias=bias, out_hw=out_hw)  # type: ignore[arg-type]
        self._record.append(whole.model_copy(update={
            "connectivity": self.connectivity, "macs": sum(p.macs for p in parts),
            "weight_bytes": sum(p.weight_bytes for p in parts)}))

    def layer_costs(self, k: int) -> list[LayerCost]:
        """Shape and cost of each convolution and linear layer at k groups (one batch-1 forward)."""
        self._record = []
        previous, was_training = self.active_groups, self.training
        try:
            self.eval()
            self.set_active_groups(k)
            with torch.inference_mode():
                self(torch.zeros(1, *self.input_shape, device=self.input_mean.device))
            return self._record
        finally:
            self._record = None
            self.set_active_groups(previous)
            self.train(was_training)

    def owned_parameters(self, k: int) -> list[tuple[nn.Parameter, Tensor]]:
        """Every learnable tensor with entries group k owns (first runs at k), with a 0/1 mask of them."""
        out = []
        for node in self.spec.nodes:
            source = self._source_active(node) if node.inputs else None
            for name in node.tensors:
                if name in BUFFERS:
                    continue
                mask = torch.from_numpy(owner(self.connectivity, node, name, source) == k)
                if mask.any():
                    param = self.tensor(node.name, name)
                    assert isinstance(param, nn.Parameter)
                    out.append((param, mask.to(param.dtype).to(param.device)))
        return out

    def params_at(self, k: int) -> int:
        """Learnable parameters the k-group sub-network uses (the corners it reads)."""
        return sum(self._used(n, name, k) for n in self.spec.nodes for name in n.tensors
                   if name not in BUFFERS and not name.startswith("k_"))

    def state_bytes_at(self, k: int) -> int:
        """Bytes a stand-alone k-group model would store (its weights and statistics), float32."""
        names = ("weight", "bias", "value", "running_mean", "running_var", "index")
        return 4 * sum(self._used(n, name, k) for n in self.spec.nodes for name in n.tensors if name in names)

    def _used(self, node: GraphNode, name: str, k: int) -> int:
        shape = node.tensors[name]
        total = 1
        for s in shape:
            total *= s
        if not node.active or name == "index":
            return total if name != "index" else node.active[k - 1]
        rows = node.active[k - 1]
        blocks = self._blocks(node, k) if name == "weight" and node.op in ("conv2d", "linear") else None
        if blocks is not None:
            return total // (shape[0] * shape[1]) * sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in blocks)
        if node.op in ("conv2d", "linear") and name == "weight" and len(shape) >= 2:
            source = self.spec.nodes[self._index[node.inputs[0]]]
            cols = source.active[k - 1] if int(node.attrs.get("groups", 1) or 1) == 1 else shape[1]  # type: ignore[arg-type]
            return total // (shape[0] * shape[1]) * rows * cols
        return total // node.active[-1] * rows  # every other stored tensor has one channel axis
