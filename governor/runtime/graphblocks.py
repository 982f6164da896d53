"""Grouped and nested connectivity for converted networks: which blocks of a weight each k runs.

Every channel axis of a converted network is stored group-major (``active[j-1]`` is where group j
ends), so a weight of shape (out, in, ...) is a G x G grid of blocks: rows of output group r, columns
of input group c. The three connectivities differ in the blocks the k-group sub-network runs:

- ``slimmable``: every block with r, c <= k, the top-left corner (k = G is the original network);
- ``nested``: blocks with c <= r <= k, block lower-triangular (the paper's nested form);
- ``grouped``: blocks with c = r <= k, block-diagonal (the paper's grouped form).

An axis whose channels all belong to group 1 (the image, or the classes a classifier outputs) has no
grid: a layer reading the image gives every output group all of its channels, and a classifier sums
what every active input group contributes. Blocks never run are still stored (so the conversion can
be checked against the original at k = G as slimmable), but they are not counted as parameters.

Under nested and grouped, channel group j computes the same values at every k >= j, so groups can
be trained one after another (stage j trains exactly the entries group j owns, :func:`owner`), and a
finished group never changes. An op that mixes all active channels into each one (layer norm over
channels) breaks that, and is refused by :func:`blocking_problem`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from governor.core.modelgraph import GraphNode, GraphSpec

__all__ = ["BLOCKED", "Block", "blocking_problem", "conv_groups", "group_ids", "is_grouped", "owner", "weight_blocks"]

BLOCKED = ("grouped", "nested")
Block = tuple[int, int, int, int]  # rows r0:r1, columns c0:c1 of the stored weight


def is_grouped(active: Sequence[int]) -> bool:
    """Whether an axis is split into groups (not all of its channels in group 1)."""
    return bool(active) and active[0] != active[-1]


def group_ids(active: Sequence[int]) -> np.ndarray:
    """The group (1..G) of every position of an axis, from its group-major prefix lengths."""
    positions = np.arange(active[-1])
    return np.searchsorted(np.asarray(active), positions, side="right") + 1


def weight_blocks(connectivity: str, out_active: Sequence[int], in_active: Sequence[int], k: int) -> list[Block]:
    """The (r0, r1, c0, c1) blocks of a weight the k-group sub-network runs, one per output group."""
    blocks = []
    for j in range(1, k + 1):
        r0, r1 = (out_active[j - 2] if j > 1 else 0), out_active[j - 1]
        if r1 == r0:
            continue
        c0 = 0 if connectivity == "nested" or j == 1 else in_active[j - 2]
        blocks.append((r0, r1, c0, in_active[j - 1]))
    return blocks


def conv_groups(node: GraphNode) -> int:
    """A convolution's own groups attribute (1 for a linear layer): depthwise has one per channel."""
    value = node.attrs.get("groups", 1)
    return value if isinstance(value, int) else 1


def blocking_problem(spec: GraphSpec) -> str | None:
    """Why this graph cannot be nested or grouped (one line naming the node), or None when it can."""
    for node in spec.nodes:
        if node.op == "layer_norm" and is_grouped(node.active):
            return (f"node {node.name!r} (layer_norm) normalises over every active channel, so a group's output "
                    "would change when later groups are added; use --connectivity slimmable for this network")
    return None


def owner(connectivity: str, node: GraphNode, name: str, source_active: Sequence[int] | None) -> np.ndarray:
    """For every entry of tensor ``name`` of ``node``: the group (1..G) that owns it, 0 for entries no k
    runs. ``source_active`` is the node's input axis (weights of convolutions and linear layers)."""
    shape = node.tensors[name]
    size = int(np.prod(shape)) if shape else 1
    out = node.active
    if name == "index" or not out:
        return np.ones(shape, dtype=np.int64)
    rows = group_ids(out) if is_grouped(out) else np.ones(out[-1], dtype=np.int64)
    if name.startswith("k_"):  # slimmable's private batch norm: row k-1 belongs to k
        return _spread(np.arange(1, shape[0] + 1)[:, None], shape)
    weight = node.op in ("conv2d", "linear") and name == "weight"
    reads_all = node.op == "linear" or conv_groups(node) == 1
    if weight and reads_all and source_active is not None:
        cols_grouped, rows_grouped = is_grouped(source_active), is_grouped(out)
        cols = group_ids(source_active) if cols_grouped else np.ones(source_active[-1], dtype=np.int64)
        r, c = rows[:, None], cols[None, :]
        if rows_grouped and cols_grouped:
            runs = (c <= r) if connectivity == "nested" else (c == r) if connectivity == "grouped" else True
            grid = np.where(runs, np.maximum(r, c), 0)
        else:
            grid = np.maximum(r, c)
        return _spread(grid.reshape(grid.shape + (1,) * (len(shape) - 2)), shape)
    if node.op == "constant":
        axis = node.channel_axis
        view = [1] * len(shape)
        view[axis] = shape[axis]
        return _spread(rows.reshape(view), shape)
    if len(shape) >= 1 and shape[0] == out[-1]:  # one channel axis first: bias, batch norm, conv weight rows
        return _spread(rows.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
    return np.ones(shape, dtype=np.int64) if size else np.zeros(shape, dtype=np.int64)


def _spread(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out: np.ndarray = np.broadcast_to(values, shape).astype(np.int64)
    return out
