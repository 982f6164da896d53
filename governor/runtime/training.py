"""Incremental training: stage k trains group k while groups < k stay bit-for-bit frozen.

Why the frozen groups cannot move: after each backward pass every grouped tensor's gradient is
zeroed outside group k's contiguous range (layers.py keeps each group contiguous), weight decay is
added by hand inside that range only, and each stage starts a fresh Adam whose moments for the
zeroed elements stay exactly 0, so their update is exactly 0. Batch norm runs groups < k in eval
mode (running statistics untouched). The classifier bias belongs to group 1 and trains in stage 1.
Hence the k-group sub-network's outputs after stage k equal, bit for bit, its outputs at the end.

Each stage uses a cosine learning-rate decay over its epochs. A checkpoint after every epoch holds
the weights, optimizer, data-order RNG and the acceptance state below, so a resumed run reproduces an
uninterrupted one.

Acceptance: adding group k must not lower validation accuracy, so that accuracy is non-decreasing in
k. Stage k >= 2 is accepted when its k-group sub-network's validation accuracy is at least that of
the k-1 groups before it (fixed: those are frozen). When the last epoch falls short, the stage keeps
its best epoch (highest accuracy, the later on ties) if that one meets the floor; otherwise it trains
up to ``epochs`` more epochs (a second cosine decay from ``EXTRA_LR_FRACTION * lr``, same optimizer)
and stops at the first that meets it. If none does, it keeps its best epoch and the shortfall is in
:attr:`TrainedModel.stages`. A last epoch that meets the floor is kept as it is: the rule changes
nothing in a run that already met it. Choosing epochs on the validation split makes the stored figure
of such a stage a selected one (optimistic by about the split's noise, one or two samples).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from governor.runtime.data import Dataset, Split, as_float_batch, augment
from governor.runtime.graphnet import GraphNet
from governor.runtime.layers import GroupConv2d, GroupedTensor, GroupHead
from governor.runtime.nets import DynamicNet, build_net, scaled_widths

CHECKPOINT_VERSION = 1  # version 1 files without the acceptance entries resume too
EXTRA_LR_FRACTION = 0.1  # peak learning rate of a stage's extra epochs, as a fraction of ``lr``


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one incremental training run; ``epochs`` is per stage (one stage per group)."""

    arch: str = "resnet-small"
    groups: int = 4
    connectivity: Literal["grouped", "nested", "slimmable"] = "grouped"
    epochs: int = 5
    width: float = 1.0
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = False
    init: str = ""  # sha256 of the converted model file fine-tuned (``--from``); "" for a new network


@dataclass(frozen=True)
class Progress:
    """Reported after every batch; ``batch == batches`` closes an epoch."""

    stage: int
    stages: int
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float


@dataclass(frozen=True)
class StageOutcome:
    """How stage k ended: epochs run (more than ``TrainConfig.epochs`` when it needed extra ones), the
    epoch kept, its k-group validation accuracy and the floor it had to reach (k-1's; None for k = 1)."""

    k: int
    epochs_run: int
    kept_epoch: int
    accuracy: float | None  # None for k = 1, which has no floor and is not evaluated during training
    floor: float | None

    @property
    def accepted(self) -> bool:
        return self.floor is None or (self.accuracy is not None and self.accuracy >= self.floor)


@dataclass(frozen=True)
class TrainedModel:
    net: DynamicNet
    accuracies: tuple[float, ...]  # validation accuracy for k = 1..G, fraction 0..1
    seconds: float  # measured wall time of training, including resumed parts
    stages: tuple[StageOutcome, ...] = ()  # one per stage, in order


class CheckpointMismatch(ValueError):
    """The checkpoint on disk belongs to a different run."""


def new_net(config: TrainConfig, split: Split) -> DynamicNet:
    widths, fc_widths = scaled_widths(config.arch, config.width, config.groups)
    mean, std = split.channel_stats()
    return build_net(
        config.arch, groups=config.groups, connectivity=config.connectivity, input_shape=split.train.input_shape,
        classes=len(split.train.classes), widths=widths, fc_widths=fc_widths, mean=mean, std=std,
        gen=torch.Generator().manual_seed(config.seed),
    )


def evaluate(net: DynamicNet, data: Dataset, k: int, batch_size: int = 512) -> float:
    """Top-1 accuracy (fraction) of the k-group sub-network."""
    net.eval()
    net.set_active_groups(k)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data.y), batch_size):
            logits = net(torch.from_numpy(as_float_batch(data.x[start : start + batch_size])))
            correct += int((logits.argmax(1).numpy() == data.y[start : start + batch_size]).sum())
    return correct / max(1, len(data.y))


class _Stage:
    """The trainable part of stage k: which tensors, which element range, decay or not."""

    def __init__(self, net: DynamicNet, k: int, weight_decay: float):
        decayed = {id(m.weight) for m in net.modules() if isinstance(m, GroupConv2d)}
        decayed |= {id(m.weight_t) for m in net.modules() if isinstance(m, GroupHead)}
        self.k, self.weight_decay = k, weight_decay
        self.tensors = [g for g in net.grouped_tensors() if isinstance(g.tensor, torch.nn.Parameter)]
        self.decayed = [id(g.tensor) in decayed for g in self.tensors]
        self.params = [g.tensor for g in self.tensors if g.offsets[k] > g.offsets[k - 1]]

    def mask_gradients(self) -> None:
        for group, decay in zip(self.tensors, self.decayed, strict=True):
            if group.tensor.grad is not None:
                self._mask_one(group, decay)

    def _mask_one(self, group: GroupedTensor, decay: bool) -> None:
        lo, hi = group.offsets[self.k - 1], group.offsets[self.k]
        assert group.tensor.grad is not None
        grad = group.tensor.grad.view(-1)
        grad[:lo].zero_()
        grad[hi:].zero_()
        if decay and self.weight_decay:
            grad[lo:hi].add_(group.tensor.detach().view(-1)[lo:hi], alpha=self.weight_decay)


class _OwnedStage:
    """Stage k of a grouped or nested converted network: the entries group k owns train, nothing else.

    Owned means first run at k (``governor.runtime.graphblocks.owner``): group k's rows of each weight
    over the input groups they read, its biases, batch-norm affine and layer scales. Every other entry
    gets a zero gradient, and Adam moves an element whose gradient has always been 0 by exactly 0, so
    groups < k stay bit for bit; their batch-norm statistics are frozen by the network itself.
    """

    def __init__(self, net: GraphNet, k: int, weight_decay: float):
        self.k, self.weight_decay = k, weight_decay
        self.masks = net.owned_parameters(k)
        self.params = [p for p, _ in self.masks]

    def mask_gradients(self) -> None:
        for p, mask in self.masks:
            if p.grad is not None:
                p.grad.mul_(mask)
                if self.weight_decay and p.dim() > 1:  # weights only, as for the built-in networks
                    p.grad.add_(p.detach() * mask, alpha=self.weight_decay)


class _PrivateStage:
    """Stage k of a converted (slimmable) network: only row k-1 of the private batch-norm affine trains.

    Every other tensor is shared with k = G, or is another k's own, so it must not move: those get no
    gradient (requires_grad off) or a zero one, and Adam's update of an element whose gradient has
    always been 0 is exactly 0. No weight decay, as is usual for batch-norm affine parameters.
    """

    def __init__(self, net: GraphNet, k: int):
        self.k = k
        self.params = [p for name, p in net.named_parameters() if name.rsplit(".", 1)[-1] in ("k_weight", "k_bias")]

    def mask_gradients(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad[: self.k - 1].zero_()
                p.grad[self.k :].zero_()


def _freeze_shared(net: DynamicNet) -> dict[str, bool]:
    """Turn gradients off for every tensor a converted network shares with k = G; returns the old flags."""
    before = {name: p.requires_grad for name, p in net.named_parameters()}
    for name, p in net.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[-1] in ("k_weight", "k_bias"))
    return before


class _Acceptance:
    """Stage k's acceptance (module docstring): its floor, its best epoch so far and when it ends."""

    def __init__(self, net: DynamicNet, val: Dataset, k: int, epochs: int, saved: dict[str, Any] | None):
        self.net, self.val, self.k, self.epochs = net, val, k, epochs
        self.floor = evaluate(net, val, k - 1) if k > 1 else None
        net.set_training_stage(k)
        saved = saved or {}
        self.best_accuracy: float | None = saved.get("accuracy")
        self.best_epoch: int = saved.get("epoch", 0)
        self.best_state: dict[str, torch.Tensor] | None = saved.get("model")
        self.kept: tuple[int, float | None] = (0, None)  # (epoch, its accuracy) once the stage has ended

    def done_after(self, epoch: int) -> bool:
        """Called after the 1-based ``epoch``; True when the stage ends, with the kept weights in the net."""
        if self.floor is None:
            self.kept = (epoch, None)
            return epoch >= self.epochs
        accuracy = evaluate(self.net, self.val, self.k)
        self.net.set_training_stage(self.k)
        if self.best_accuracy is None or accuracy >= self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, epoch
            self.best_state = {name: t.detach().clone() for name, t in self.net.state_dict().items()}
        if epoch < self.epochs:
            return False
        if accuracy >= self.floor:
            self.kept = (epoch, accuracy)
            return True
        assert self.best_state is not None and self.best_accuracy is not None
        if (epoch == self.epochs and self.best_accuracy >= self.floor) or epoch >= 2 * self.epochs:
            self.net.load_state_dict(self.best_state)
            self.kept = (self.best_epoch, self.best_accuracy)
            return True
        return False

    def outcome(self, epochs_run: int) -> StageOutcome:
        return StageOutcome(self.k, epochs_run, self.kept[0], self.kept[1], self.floor)

    def saved(self) -> dict[str, Any]:
        """What a checkpoint needs to resume this stage's acceptance."""
        if self.best_state is None:
            return {}
        return {"accuracy": self.best_accuracy, "epoch": self.best_epoch, "model": self.best_state}


def _learning_rate(config: TrainConfig, epoch: int, batch: int, batches: int) -> float:
    """Cosine decay over the stage's ``epochs``; an extra epoch (``epoch >= epochs``) decays again from
    ``EXTRA_LR_FRACTION * lr`` over up to ``epochs`` more. ``epoch`` is 0-based."""
    peak = config.lr
    if epoch >= config.epochs:
        peak, epoch = config.lr * EXTRA_LR_FRACTION, epoch - config.epochs
    return peak * 0.5 * (1 + math.cos(math.pi * (epoch * batches + batch) / (config.epochs * batches)))


def _run_epoch(net: DynamicNet, stage: _Stage | _OwnedStage | _PrivateStage, opt: torch.optim.Optimizer, data: Dataset,
               config: TrainConfig, rng: np.random.Generator, epoch: int,
               report: Callable[[int, int, float], None]) -> None:
    net.train()
    order = rng.permutation(len(data.y))
    batches = math.ceil(len(order) / config.batch_size)
    for b in range(batches):
        index = order[b * config.batch_size : (b + 1) * config.batch_size]
        x = augment(data.x[index], rng) if config.augment else data.x[index]
        for group in opt.param_groups:
            group["lr"] = _learning_rate(config, epoch, b, batches)
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(torch.from_numpy(as_float_batch(x))), torch.from_numpy(data.y[index]))
        loss.backward()  # type: ignore[no-untyped-call]
        stage.mask_gradients()
        opt.step()
        report(b + 1, batches, float(loss.detach()))


def train_incremental(
    config: TrainConfig, split: Split, *, checkpoint: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_stage_end: Callable[[DynamicNet, int], None] | None = None,
    threads: int | None = None, net: DynamicNet | None = None,
) -> TrainedModel:
    """Train G stages (see module docstring); resume from ``checkpoint`` if it exists and matches.

    ``net``: fine-tune this network instead of building a new one. A slimmable converted network
    (GraphNet) trains stages 1..G-1 only, each its own batch-norm statistics and affine, so k = G stays
    the original network bit for bit; a grouped or nested one trains stages 1..G, each the entries its
    group owns. Either way a finished stage never changes again.

    ``on_stage_end(net, k)`` is called after stage k; it may run the net (it is put back in training
    mode by the next stage) but must not change weights. ``threads`` sets torch's intra-op threads
    for the duration of training (None: leave them).
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train(config, split, checkpoint, progress, on_stage_end, net)
    finally:
        torch.set_num_threads(before)


def _train(
    config: TrainConfig, split: Split, checkpoint: Path | None, progress: Callable[[Progress], None] | None,
    on_stage_end: Callable[[DynamicNet, int], None] | None, given: DynamicNet | None = None,
) -> TrainedModel:
    net, rng = given if given is not None else new_net(config, split), np.random.default_rng(config.seed)
    private = isinstance(net, GraphNet) and net.connectivity == "slimmable"
    flags = _freeze_shared(net) if private else {}
    try:
        return _stages(config, split, checkpoint, progress, on_stage_end, net, rng)
    finally:
        for name, p in net.named_parameters():
            p.requires_grad_(flags.get(name, p.requires_grad))


def _stages(
    config: TrainConfig, split: Split, checkpoint: Path | None, progress: Callable[[Progress], None] | None,
    on_stage_end: Callable[[DynamicNet, int], None] | None, net: DynamicNet, rng: np.random.Generator,
) -> TrainedModel:
    slimmable = isinstance(net, GraphNet) and net.connectivity == "slimmable"
    last = config.groups - 1 if slimmable else config.groups  # slimmable k = G is the original: it stays
    resume = _load_checkpoint(checkpoint, config, split, net, rng)
    stage0, epoch0, seconds = resume.get("stage", 1), resume.get("epoch", 0), resume.get("seconds", 0.0)
    outcomes = [StageOutcome(**o) for o in json.loads(resume.get("stages", "[]"))]
    started = time.perf_counter()
    for k in range(stage0, last + 1):
        resumed = k == stage0 and epoch0 > 0
        net.set_training_stage(k)
        stage: _Stage | _OwnedStage | _PrivateStage
        if isinstance(net, GraphNet):
            stage = _PrivateStage(net, k) if slimmable else _OwnedStage(net, k, config.weight_decay)
        else:
            stage = _Stage(net, k, config.weight_decay)
        opt = torch.optim.Adam(stage.params, lr=config.lr)
        if resumed and "optimizer" in resume:
            opt.load_state_dict(resume["optimizer"])
        accept = _Acceptance(net, split.val, k, config.epochs, resume.get("best") if resumed else None)
        epoch, done = (epoch0 if resumed else 0), False
        while not done:
            def report(b: int, n: int, loss: float, k: int = k, epoch: int = epoch) -> None:
                if progress:
                    shown = config.epochs if epoch < config.epochs else 2 * config.epochs
                    progress(Progress(k, last, epoch + 1, shown, b, n, loss))
            _run_epoch(net, stage, opt, split.train, config, rng, epoch, report)
            epoch += 1
            done = accept.done_after(epoch)
            if done:
                outcomes.append(accept.outcome(epoch))
            if checkpoint is not None:
                elapsed = seconds + time.perf_counter() - started
                _save_checkpoint(checkpoint, config, split, net, opt, rng, (k, epoch, done), elapsed,
                                 accept.saved(), outcomes)
        if on_stage_end:
            on_stage_end(net, k)
    net.set_training_stage(None)
    accuracies = tuple(evaluate(net, split.val, k) for k in range(1, config.groups + 1))
    net.set_active_groups(config.groups)
    return TrainedModel(net, accuracies, seconds + time.perf_counter() - started, tuple(outcomes))


def _identity(config: TrainConfig, split: Split) -> dict[str, Any]:
    return {"config": dataclasses.asdict(config), "dataset": split.train.name,
            "samples": [len(split.train.y), len(split.val.y)]}


def _save_checkpoint(path: Path, config: TrainConfig, split: Split, net: DynamicNet, opt: torch.optim.Optimizer,
                     rng: np.random.Generator, position: tuple[int, int, bool], seconds: float,
                     best: dict[str, Any], outcomes: list[StageOutcome]) -> None:
    """``position`` is (stage, epochs done in it, whether the stage has ended)."""
    stage, epoch, ended = position
    payload = {
        "version": CHECKPOINT_VERSION, "identity": json.dumps(_identity(config, split), sort_keys=True),
        "stage": stage, "epoch": epoch, "seconds": seconds, "model": net.state_dict(),
        "optimizer": opt.state_dict(), "rng": json.dumps(rng.bit_generator.state),
        "best": best, "stages": json.dumps([dataclasses.asdict(o) for o in outcomes]),
    }
    if ended:  # the next stage starts afresh
        payload.update(stage=stage + 1, epoch=0)
        del payload["optimizer"], payload["best"]
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path | None, config: TrainConfig, split: Split, net: DynamicNet,
                     rng: np.random.Generator) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        payload = torch.load(path, weights_only=True)
        identity = json.loads(payload["identity"])
    except Exception as exc:
        raise CheckpointMismatch(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc
    if payload.get("version") != CHECKPOINT_VERSION or identity != _identity(config, split):
        raise CheckpointMismatch(
            f"checkpoint {path} was written by a different run ({identity.get('config')}, "
            f"{identity.get('dataset')}); delete it or repeat that run's options to resume"
        )
    net.load_state_dict(payload["model"])
    rng.bit_generator.state = json.loads(payload["rng"])
    restored: dict[str, Any] = payload
    return restored
