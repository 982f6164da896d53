"""`governor train`: incremental training of a dynamic group-pruned network into one model file.

After every epoch a checkpoint ``OUT.ckpt`` is written; running the same command again resumes from
it (``--restart`` discards it). On success the model file is written atomically and the checkpoint
removed. torch is imported only inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from governor.cli.main import CliError

ARCHS = ("alexnet-cifar", "resnet-small")


def register(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", choices=ARCHS, help="network architecture to train from scratch")
    source.add_argument("--from", dest="from_model", type=Path, metavar="MODEL",
                        help="fine-tune a converted model file (governor convert): stages k < G, k = G unchanged")
    add("--dataset", required=True, metavar="digits|cifar10:DIR|imagefolder:DIR", help="training data")
    add("--groups", type=int, default=4, metavar="G", help="channel groups per layer (default 4)")
    add("--connectivity", choices=("grouped", "nested"), default="grouped",
        help="grouped: group j reads input group j; nested: groups <= j (default grouped)")
    add("--epochs", type=int, default=5, help="epochs per stage; there is one stage per group (default 5)")
    add("--width", type=float, default=1.0, help="width multiplier of the default layer widths")
    add("--batch-size", type=int, default=64)
    add("--lr", type=float, default=1e-2, help="Adam learning rate, cosine-decayed within each stage")
    add("--weight-decay", type=float, default=5e-4)
    add("--seed", type=int, default=0)
    add("--val-fraction", type=float, default=0.2, help="validation share for digits (cifar10 uses test_batch)")
    add("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    add("--restart", action="store_true", help="ignore an existing checkpoint and start from scratch")
    add("--force", action="store_true", help="replace MODEL if it already exists")
    add("--out", required=True, type=Path, metavar="MODEL", help="model file to write (suffix .dgm suggested)")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.groups < 1 or args.epochs < 1 or args.batch_size < 1:
        raise CliError("--groups, --epochs and --batch-size must be at least 1")
    if args.width <= 0 or args.lr <= 0:
        raise CliError("--width and --lr must be positive")
    if not args.out.parent.is_dir():
        raise CliError(f"directory {args.out.parent} does not exist; create it or choose another --out")
    if args.out.exists() and not args.force:
        raise CliError(f"{args.out} already exists; pass --force to replace it or choose another --out")


class ProgressBar:
    """One self-rewriting line on a terminal; one line per finished epoch otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width, self.tty = width, self.stream.isatty()
        self.started = time.monotonic()

    def __call__(self, p: Any) -> None:
        done = p.batch == p.batches
        if not (self.tty or done):
            return
        filled = round(self.width * p.batch / p.batches)
        line = (f"stage {p.stage}/{p.stages} epoch {p.epoch}/{p.epochs} "
                f"[{'#' * filled}{'.' * (self.width - filled)}] loss {p.loss:.3f} "
                f"{time.monotonic() - self.started:.0f}s")
        self.stream.write(("\r" + line + ("\n" if done else "")) if self.tty else line + "\n")
        self.stream.flush()


def _table(meta: Any) -> str:
    rows = [("k", "accuracy", "params", "MACs", "weights KiB")]
    for lv in meta.levels:
        acc = "-" if lv.accuracy is None else f"{100 * lv.accuracy:.2f}%"
        rows.append((str(lv.k), acc, f"{lv.params:,}", f"{lv.macs:,}", f"{lv.state_bytes / 1024:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    ratio = meta.separate_models_state_bytes / meta.total_state_bytes
    lines.append(f"dynamic model {meta.total_state_bytes / 1024:.1f} KiB; {meta.groups} separate models would "
                 f"take {meta.separate_models_state_bytes / 1024:.1f} KiB ({ratio:.2f}x)")
    return "\n".join(lines)


def stage_notes(stages: Sequence[Any], epochs: int) -> list[str]:
    """One line per stage that did not simply end on its last planned epoch: it kept an earlier, better one,
    needed extra epochs to reach its floor, or never reached it (``StageOutcome``s; ``epochs`` per stage)."""
    notes = []
    for st in stages:
        if st.accuracy is None or st.floor is None:
            continue  # k = 1 (or k = G of a converted model): nothing is held against a floor
        got, floor = f"{100 * st.accuracy:.2f}%", f"{100 * st.floor:.2f}%"
        if not st.accepted:
            notes.append(f"k={st.k}: {got} after {st.epochs_run} epochs, below its floor {floor} (k={st.k - 1}'s): "
                         "more groups are not more accurate there; train longer (--epochs)")
        elif st.kept_epoch != st.epochs_run:
            notes.append(f"k={st.k}: kept epoch {st.kept_epoch} of {st.epochs_run} ({got}, floor {floor}); the "
                         "later epochs scored lower on the validation split")
        elif st.epochs_run > epochs:
            notes.append(f"k={st.k}: needed {st.epochs_run} epochs, {st.epochs_run - epochs} more than --epochs, "
                         f"to reach its floor {floor} ({got})")
    return notes


def run(args: argparse.Namespace) -> int:
    _check(args)
    if args.from_model is not None:
        return _fine_tune(args)
    from governor.runtime.data import DatasetError, load_split
    from governor.runtime.modelfile import describe, save_model
    from governor.runtime.training import CheckpointMismatch, TrainConfig, train_incremental

    try:
        split = load_split(args.dataset, val_fraction=args.val_fraction, seed=args.seed)
    except DatasetError as exc:
        raise CliError(str(exc)) from exc
    config = TrainConfig(
        arch=args.arch, groups=args.groups, connectivity=args.connectivity, epochs=args.epochs, width=args.width,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        augment=split.train.name == "cifar10",
    )
    checkpoint = args.out.with_name(args.out.name + ".ckpt")
    if args.restart:
        checkpoint.unlink(missing_ok=True)
    elif checkpoint.exists():
        print(f"resuming from {checkpoint}", file=sys.stderr)
    try:
        trained = train_incremental(config, split, checkpoint=checkpoint, progress=ProgressBar(),
                                    threads=args.threads)
    except CheckpointMismatch as exc:
        raise CliError(f"{exc} (or pass --restart)") from exc
    except KeyboardInterrupt:
        print(f"\nstopped; run the same command again to resume from {checkpoint}", file=sys.stderr)
        raise
    meta = describe(trained, config, split)
    save_model(args.out, trained.net, meta)
    checkpoint.unlink(missing_ok=True)
    print(_table(meta))
    for note in stage_notes(trained.stages, args.epochs):
        print(note)
    print(f"wrote {args.out} ({args.arch}, G={args.groups}, {args.connectivity}, trained {trained.seconds:.1f} s)")
    return 0


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fine_tune(args: argparse.Namespace) -> int:
    """``--from MODEL``: fine-tune a converted network's sub-networks k < G (k = G stays as it is)."""
    from governor.core.modelmeta import ModelFileError, TrainingInfo
    from governor.runtime.data import DatasetError, load_split
    from governor.runtime.graphnet import GraphNet
    from governor.runtime.modelfile import describe_converted, load_model, save_model
    from governor.runtime.training import CheckpointMismatch, TrainConfig, train_incremental

    try:
        loaded = load_model(args.from_model)
    except ModelFileError as exc:
        raise CliError(str(exc)) from exc
    net, meta = loaded.net, loaded.meta
    if not isinstance(net, GraphNet):
        raise CliError(f"{args.from_model} is a {meta.arch} network, not a converted one; --from takes the output "
                       "of `governor convert` (train built-in networks with --arch)")
    try:
        split = load_split(args.dataset, val_fraction=args.val_fraction, seed=args.seed,
                           input_shape=meta.input_shape)
    except DatasetError as exc:
        raise CliError(str(exc)) from exc
    if len(split.train.classes) != len(meta.classes):
        raise CliError(f"{args.dataset} has {len(split.train.classes)} classes but {args.from_model} has "
                       f"{len(meta.classes)} outputs; convert the model with --arg num_classes="
                       f"{len(split.train.classes)} (and weights for that head)")
    config = TrainConfig(arch=meta.arch, groups=meta.groups, connectivity=meta.connectivity, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=0.0, seed=args.seed,
                         init=_digest(args.from_model))
    checkpoint = args.out.with_name(args.out.name + ".ckpt")
    if args.restart:
        checkpoint.unlink(missing_ok=True)
    elif checkpoint.exists():
        print(f"resuming from {checkpoint}", file=sys.stderr)
    try:
        trained = train_incremental(config, split, checkpoint=checkpoint, progress=ProgressBar(),
                                    threads=args.threads, net=net)
    except CheckpointMismatch as exc:
        raise CliError(f"{exc} (or pass --restart)") from exc
    except KeyboardInterrupt:
        print(f"\nstopped; run the same command again to resume from {checkpoint}", file=sys.stderr)
        raise
    assert isinstance(trained.net, GraphNet)
    info = TrainingInfo(dataset=f"{split.train.name} (fine-tuned {meta.training.dataset})",
                        train_samples=len(split.train.y), val_samples=len(split.val.y), epochs_per_stage=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, weight_decay=0.0, seed=args.seed,
                        seconds=trained.seconds)
    out_meta = describe_converted(trained.net, classes=split.train.classes, info=info, accuracies=trained.accuracies)
    save_model(args.out, trained.net, out_meta)
    checkpoint.unlink(missing_ok=True)
    print(_table(out_meta))
    for note in stage_notes(trained.stages, args.epochs):
        print(note)
    print(f"wrote {args.out} (fine-tuned {args.from_model}, G={meta.groups}, {meta.connectivity}, "
          f"{trained.seconds:.1f} s)")
    return 0
