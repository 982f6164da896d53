"""`governor convert`: turn the user's PyTorch CNN into a dynamic group network model file.

SOURCE is ``torchvision:NAME`` or ``PKG.MODULE:CALLABLE`` (imported by this command only). The
k = G sub-network of a slimmable conversion is the original network: the command checks it on random
inputs and refuses to write a file whose logits differ by more than ``MAX_RELATIVE_ERROR``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from governor.cli.main import CliError
from governor.core.modelmeta import IMAGENET

MAX_RELATIVE_ERROR = 1e-4


def register(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("source", metavar="SOURCE", help="torchvision:NAME or PKG.MODULE:CALLABLE returning an nn.Module")
    add("--input-shape", required=True, metavar="C,H,W", help="shape of one input sample, e.g. 3,224,224")
    add("--weights", type=Path, metavar="FILE", help="state_dict to load (torch.load with weights_only=True)")
    add("--arg", action="append", default=[], metavar="KEY=VALUE",
        help="keyword argument for the constructor, e.g. --arg num_classes=10 (repeatable)")
    add("--groups", type=int, default=4, metavar="G", help="channel groups (default 4)")
    add("--connectivity", default="slimmable", choices=("grouped", "nested", "slimmable"),
        help="slimmable: k groups use the first k/G channels of every layer, k = G is the original (default)")
    add("--order", default="l1", choices=("l1", "bn", "none"),
        help="channel order within each coupled set: weight L1 norm, batch-norm scale, or as found (default l1)")
    add("--normalize", metavar="imagenet|MEAN/STD",
        help="input normalisation applied inside the model: 'imagenet', or e.g. 0.5,0.5,0.5/0.25,0.25,0.25 "
             "(default: none, the model receives inputs as sent)")
    add("--classes", type=Path, metavar="FILE", help="class names, one per line (default 0..N-1)")
    add("--force", action="store_true", help="replace MODEL if it already exists")
    add("--out", required=True, type=Path, metavar="MODEL", help="model file to write (.dgm)")
    parser.set_defaults(func=run)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise CliError(f"--input-shape {text!r}: write C,H,W as three positive integers, e.g. 3,224,224")
    return (shape[0], shape[1], shape[2])


def _normalisation(text: str | None, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if text is None:
        return (0.0,) * channels, (1.0,) * channels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    if text == "imagenet":
        mean, std = IMAGENET
    else:
        try:
            mean_text, std_text = text.split("/")
            mean = tuple(float(v) for v in mean_text.split(","))
            std = tuple(float(v) for v in std_text.split(","))
        except ValueError:
            raise CliError(f"--normalize {text!r}: write imagenet or MEAN/STD, e.g. 0.5,0.5,0.5/0.2,0.2,0.2") from None
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise CliError(f"--normalize needs {channels} means and {channels} positive standard deviations")
    return tuple(mean), tuple(std)


def _classes(path: Path | None, count: int) -> tuple[str, ...]:
    if path is None:
        return tuple(str(i) for i in range(count))
    try:
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as exc:
        raise CliError(f"--classes {path}: {exc.strerror or exc}") from exc
    if len(names) != count:
        raise CliError(f"--classes {path} lists {len(names)} names but the model has {count} outputs")
    return names


def run(args: argparse.Namespace) -> int:
    shape = _shape(args.input_shape)
    if args.groups < 1:
        raise CliError("--groups must be at least 1")
    if not args.out.parent.is_dir():
        raise CliError(f"directory {args.out.parent} does not exist; create it or choose another --out")
    if args.out.exists() and not args.force:
        raise CliError(f"{args.out} already exists; pass --force to replace it or choose another --out")
    mean, std = _normalisation(args.normalize, shape[0])
    from governor.core.modelmeta import TrainingInfo
    from governor.runtime.converter import ConversionError, convert
    from governor.runtime.converter.sources import (
        check_equivalence,
        load_weights,
        module_from_source,
        output_count,
        parse_args,
    )
    from governor.runtime.modelfile import describe_converted, save_model

    started = time.perf_counter()
    try:
        module = module_from_source(args.source, parse_args(args.arg))
        if args.weights is not None:
            load_weights(module, args.weights)
        net = convert(module, shape, groups=args.groups, order=args.order, mean=mean, std=std, source=args.source)
        error = check_equivalence(module, net, shape)  # the graph, checked as slimmable, where k = G is exact
        if args.connectivity != "slimmable":
            net = net.with_connectivity(args.connectivity)
    except ConversionError as exc:
        raise CliError(str(exc)) from exc
    except ValueError as exc:  # grouped / nested where the graph does not allow it
        raise CliError(f"--connectivity {args.connectivity}: {exc}") from exc
    except RuntimeError as exc:  # the module itself fails on this input shape
        raise CliError(f"{args.source} fails on an input of shape {shape}: {str(exc).splitlines()[0]}") from exc
    if not error <= MAX_RELATIVE_ERROR:
        raise CliError(f"the converted network differs from {args.source} at k = G by {error:.2e} (relative); "
                       "this is a bug: please file an issue with the model's source")
    count = output_count(net, shape)
    if count is None:
        raise CliError(f"{args.source} does not return (N, classes) logits; a classifier is needed")
    info = TrainingInfo(dataset=f"converted:{args.source}", train_samples=0, val_samples=0, epochs_per_stage=0,
                        batch_size=1, lr=0.0, weight_decay=0.0, seed=0, seconds=time.perf_counter() - started)
    meta = describe_converted(net, classes=_classes(args.classes, count), info=info)
    save_model(args.out, net, meta)
    full = meta.levels[-1].macs
    for level in meta.levels:
        print(f"k={level.k}: {level.macs / 1e6:9.1f} MMACs ({level.macs / full:5.1%}), {level.params:,} parameters")
    checked = "k = G" if args.connectivity == "slimmable" else "its graph, run as slimmable at k = G,"
    print(f"{checked} matches {args.source} within {error:.1e} (relative); {len(net.spec.nodes)} graph nodes; "
          f"converted in {time.perf_counter() - started:.1f} s")
    if args.connectivity != "slimmable":
        print(f"{args.connectivity}: each k runs fewer blocks of every weight, so no k is the original network yet; "
              f"fine-tune it before serving: governor train --from {args.out} --dataset ... --out ...")
    print(f"wrote {args.out} (G={args.groups}, {args.connectivity}, order {args.order})")
    return 0

