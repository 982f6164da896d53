"""`governor export MODEL --onnx DIR [--k LIST]`: one ONNX file per k, each checked in onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from governor.cli.main import CliError


def register(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("model", type=Path, metavar="MODEL", help="model file (.dgm) from governor train or governor convert")
    add("--onnx", type=Path, required=True, metavar="DIR", help="directory for MODEL_k1.onnx ... MODEL_kG.onnx")
    add("--k", metavar="LIST", help="comma-separated group counts to export (default: all)")
    add("--batch", type=int, default=1, help="static batch size of the exported files (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from governor.core.modelmeta import ModelFileError
    from governor.runtime.export import ExportError, export_onnx
    from governor.runtime.modelfile import load_model

    try:
        loaded = load_model(args.model)
    except ModelFileError as exc:
        raise CliError(str(exc)) from exc
    G = loaded.meta.groups
    try:
        ks = list(range(1, G + 1)) if args.k is None else [int(v) for v in args.k.split(",")]
    except ValueError:
        raise CliError(f"--k {args.k!r}: write group counts separated by commas, e.g. 1,2,4") from None
    bad = [k for k in ks if not 1 <= k <= G]
    if bad:
        raise CliError(f"--k {bad}: this model has k = 1..{G}")
    if args.batch < 1:
        raise CliError("--batch must be at least 1")
    if args.onnx.exists() and not args.onnx.is_dir():
        raise CliError(f"--onnx {args.onnx} is a file; give a directory")
    try:
        written = export_onnx(loaded.net, args.onnx, ks, stem=args.model.stem, batch=args.batch)
    except ExportError as exc:
        raise CliError(str(exc)) from exc
    for item in written:
        print(f"k={item.k}: {item.path} ({item.bytes / 1e6:.1f} MB), onnxruntime vs torch max abs error "
              f"{item.max_abs_error:.2e}")
    return 0
