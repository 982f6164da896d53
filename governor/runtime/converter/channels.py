"""Which channels are coupled, which group each one joins, and the group-major order of every tensor.

Theory of operation. Every channel a layer creates gets an id: the image's channels, each output
channel of a convolution or linear layer, each channel of a stored constant. A tensor's channel axis
is then an array of ids (a concatenation concatenates arrays, a split or shuffle indexes one, a
flatten repeats each id H*W times, a per-channel op passes it through). Two ids are *coupled* when
the network combines them position by position (residual adds, squeeze-excitation gates, a layer
scale); a grouped or depthwise convolution couples all input and output channels of each of its
convolution groups, so a sub-network keeps whole convolution groups. Coupled ids form a class
(union-find), and a class joins one group, its *rank* r in 1..G: it is active for every k >= r.

Ranks are handed out producer by producer in graph order: a layer's not-yet-ranked classes, most
important first (``order``: weight L1 norm, batch-norm scale, or as found), are cut into G parts of
about equal channel count. Classes that touch the image or the network's output are rank 1 (always
active). Every tensor then stores its channels stably sorted by rank (group-major): positions that
an add combines have equal ranks, so both operands get the same order, and the k-group sub-network
reads a prefix of every channel axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from governor.runtime.converter.fxgraph import ConversionError, RawNode

Order = Literal["l1", "bn", "none"]
_PER_CHANNEL = {"batch_norm", "layer_norm", "relu", "relu6", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu",
                "tanh", "add_scalar", "mul_scalar", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "mean"}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, count: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Layout:
    """The result: per node, its output's channel axis and, where it has one, the group-major order."""

    axis: dict[str, int | None]  # channel axis of each node's output (None: no channel axis)
    order: dict[str, np.ndarray]  # original channel positions, in stored (group-major) order
    active: dict[str, tuple[int, ...]]  # active prefix length at k = 1..G


def _channel_axis(node: RawNode, inputs: list[int | None]) -> int | None:
    """Channel axis of a node's output, from its op and its inputs' axes."""
    if node.op in ("input", "conv2d"):
        return 1
    if node.op == "constant":
        return None  # decided where it is combined with a tensor
    if node.op == "linear":
        return len(node.shape) - 1
    if node.op == "flatten":
        return 1
    if node.op == "permute":
        assert inputs[0] is not None
        return list(node.attrs["dims"]).index(inputs[0])
    if node.op == "mean" and not node.attrs["keepdim"]:
        return inputs[0]
    return next((a for a in inputs if a is not None), None)


class _Analysis:
    def __init__(self, nodes: list[RawNode], output: str, groups: int, order: Order):
        self.nodes, self.output, self.G, self.order = nodes, output, groups, order
        self.by_name = {n.name: n for n in nodes}
        self.uf = _UnionFind()
        self.ids: dict[str, np.ndarray] = {}
        self.axis: dict[str, int | None] = {}
        self.fixed: set[int] = set()
        self.producers: list[tuple[str, np.ndarray, np.ndarray]] = []  # (node, its new ids, importance per id)
        self.consumers: dict[str, list[RawNode]] = {}
        for n in nodes:
            for i in n.inputs:
                self.consumers.setdefault(i, []).append(n)

    def fail(self, node: RawNode, why: str) -> ConversionError:
        return ConversionError(f"graph node {node.name!r} ({node.op}): {why}")

    def run(self) -> Layout:
        for node in self.nodes:
            self.visit(node)
        for i in self.ids.get(self.output, np.array([], dtype=np.int64)):
            self.fixed.add(int(i))
        ranks = self.assign_ranks()
        order, active = {}, {}
        for name, ids in self.ids.items():
            r = np.array([ranks[self.uf.find(int(i))] for i in ids], dtype=np.int64)
            order[name] = np.argsort(r, kind="stable")
            active[name] = tuple(int((r <= k).sum()) for k in range(1, self.G + 1))
            if active[name][0] == 0:
                raise self.fail(self.by_name[name], f"would have no channels at k = 1 with G = {self.G}; "
                                                    "choose fewer groups")
        return Layout(self.axis, order, active)

    # -- ids -----------------------------------------------------------------------------------------
    def visit(self, node: RawNode) -> None:
        in_axes = [self.axis.get(i) for i in node.inputs]
        self.axis[node.name] = axis = _channel_axis(node, in_axes)
        ins = [self.ids.get(i) for i in node.inputs]
        op = node.op
        if op == "input":
            ids = self.uf.new(node.shape[1])
            self.fixed.update(int(i) for i in ids)
        elif op == "conv2d":
            ids = self.conv(node, ins[0])
        elif op == "linear":
            ids = self.produce(node, node.tensors["weight"].shape[0], node.tensors["weight"])
            self.check_width(node, ins[0], node.tensors["weight"].shape[1])
        elif op == "constant":
            return  # ids come when it meets a tensor
        elif op in _PER_CHANNEL or op == "permute":
            ids = self.same(node, ins[0])
        elif op in ("add", "mul"):
            ids, self.axis[node.name] = self.elementwise(node)
        elif op == "cat":
            if any(i is None for i in ins):
                raise self.fail(node, "concatenates a tensor without a channel axis")
            ids = np.concatenate([i for i in ins if i is not None])
        elif op == "gather":
            assert node.gather is not None and ins[0] is not None
            ids = ins[0][node.gather]
        elif op == "flatten":
            assert ins[0] is not None
            spatial = int(np.prod(self.by_name[node.inputs[0]].shape[2:]))
            ids = np.repeat(ins[0], spatial)
        else:
            raise self.fail(node, "unknown op")
        if axis is not None and len(node.shape) > axis and node.shape[axis] != len(ids):
            raise self.fail(node, f"channel count {node.shape[axis]} does not match the traced {len(ids)}")
        self.ids[node.name] = ids

    def same(self, node: RawNode, ids: np.ndarray | None) -> np.ndarray:
        if ids is None:
            raise self.fail(node, "its input has no channel axis")
        return ids

    def check_width(self, node: RawNode, ids: np.ndarray | None, width: int) -> None:
        if ids is None or len(ids) != width:
            raise self.fail(node, f"reads {0 if ids is None else len(ids)} channels but its weight has {width}")

    def produce(self, node: RawNode, count: int, weight: torch.Tensor) -> np.ndarray:
        ids = self.uf.new(count)
        importance = weight.detach().abs().reshape(count, -1).sum(1).double().numpy()
        if self.order == "bn":
            after = self.consumers.get(node.name, [])
            if len(after) == 1 and after[0].op == "batch_norm":
                importance = after[0].tensors["weight"].detach().abs().double().numpy()
        self.producers.append((node.name, ids, importance))
        return ids

    def conv(self, node: RawNode, ins: np.ndarray | None) -> np.ndarray:
        weight, g = node.tensors["weight"], int(node.attrs["groups"])
        c_out, c_in = weight.shape[0], weight.shape[1] * g
        self.check_width(node, ins, c_in)
        assert ins is not None
        ids = self.produce(node, c_out, weight)
        if g > 1:  # keep whole convolution groups: couple each one's inputs and outputs
            for q in range(g):
                members = [*ins[q * c_in // g : (q + 1) * c_in // g], *ids[q * c_out // g : (q + 1) * c_out // g]]
                for m in members[1:]:
                    self.uf.union(int(members[0]), int(m))
        return ids

    def elementwise(self, node: RawNode) -> tuple[np.ndarray, int]:
        """The ids and channel axis of an add or mul: those of its tensor operand, a constant's only if
        both are constants (a layer scale on the left, ``scale * x``, has ids once it met x elsewhere)."""
        a, b = node.inputs
        known = [x for x in (a, b) if x in self.ids]
        if not known:
            raise self.fail(node, "combines two tensors without a channel axis")
        tensors = [x for x in known if self.by_name[x].op != "constant"]
        base = (tensors or known)[0]
        ids, axis = self.ids[base], self.axis[base]
        assert axis is not None
        rank = len(self.by_name[base].shape)
        for other in (a, b):
            if other == base:
                continue
            if other in self.ids:
                self.couple(node, ids, self.ids[other], self.axis[other], axis)
            else:
                self.constant_ids(node, self.by_name[other], ids, axis - rank)
        return ids, axis

    def couple(self, node: RawNode, ids: np.ndarray, other: np.ndarray, other_axis: int | None, axis: int) -> None:
        if len(other) == 1 and len(ids) != 1:
            return  # broadcast along channels: nothing to couple
        if len(other) != len(ids):
            raise self.fail(node, f"combines {len(ids)} with {len(other)} channels")
        for x, y in zip(ids, other, strict=True):
            self.uf.union(int(x), int(y))

    def constant_ids(self, node: RawNode, const: RawNode, ids: np.ndarray, axis_from_end: int) -> None:
        shape = const.shape
        if const.op != "constant":
            raise self.fail(node, f"combines a tensor with {const.name!r}, which has no channel axis")
        if len(shape) < -axis_from_end or shape[axis_from_end] == 1:
            self.axis[const.name] = None
            return
        if shape[axis_from_end] != len(ids):
            raise self.fail(node, f"combines {len(ids)} channels with constant {const.name!r} of shape {shape}")
        if const.name in self.ids:
            self.couple(node, ids, self.ids[const.name], None, 0)
            return
        own = self.uf.new(len(ids))
        self.couple(node, ids, own, None, 0)
        self.ids[const.name] = own
        self.axis[const.name] = len(shape) + axis_from_end

    # -- ranks ---------------------------------------------------------------------------------------
    def assign_ranks(self) -> dict[int, int]:
        ranks: dict[int, int] = {}
        fixed_roots = {self.uf.find(i) for i in self.fixed}
        for root in fixed_roots:
            ranks[root] = 1
        for _, ids, importance in self.producers:
            roots = np.array([self.uf.find(int(i)) for i in ids])
            fresh: dict[int, list[float]] = {}
            for root, imp in zip(roots, importance, strict=True):
                if int(root) not in ranks:
                    fresh.setdefault(int(root), []).append(float(imp))
            if not fresh:
                continue
            classes = list(fresh)  # in order of first appearance
            if self.order != "none":
                classes.sort(key=lambda r: -self.class_importance(r, fresh))
            widths = np.array([len(fresh[r]) for r in classes], dtype=np.float64)
            before = np.concatenate([[0.0], np.cumsum(widths)[:-1]]) / widths.sum()
            for root, start in zip(classes, before, strict=True):
                ranks[root] = min(self.G, 1 + int(np.floor(self.G * start + 1e-9)))
        for i in range(len(self.uf.parent)):
            ranks.setdefault(self.uf.find(i), 1)
        return ranks

    def class_importance(self, root: int, fresh: dict[int, list[float]]) -> float:
        return float(np.mean(fresh[root]))


def analyse(nodes: list[RawNode], output: str, groups: int, order: Order) -> Layout:
    """Channel ranks and the group-major order of every node's output (see the module docstring)."""
    return _Analysis(nodes, output, groups, order).run()
