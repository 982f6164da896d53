"""Where a network to convert comes from: ``torchvision:NAME`` or the user's ``PKG.MODULE:CALLABLE``.

The user's module is imported by ``governor convert`` only (as the user running it), never by the
daemon, and never because a model file names it: a converted model file holds data only.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from governor.runtime.converter.fxgraph import ConversionError

__all__ = ["check_equivalence", "load_weights", "module_from_source", "output_count", "parse_args"]


def parse_args(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are Python literals (1, 0.5, True, 'x', (1, 2)) or plain strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ConversionError(f"--arg {pair!r}: write KEY=VALUE, e.g. --arg num_classes=10")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def module_from_source(source: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the module that ``source`` names, with ``kwargs`` for its constructor."""
    kwargs = dict(kwargs or {})
    prefix, sep, name = source.partition(":")
    if not sep or not name:
        raise ConversionError(f"source {source!r}: write torchvision:NAME or PKG.MODULE:CALLABLE")
    factory = _torchvision(name) if prefix == "torchvision" else _user_callable(prefix, name)
    try:
        module = factory(**kwargs)
    except TypeError as exc:
        raise ConversionError(f"{source}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ConversionError(f"{source} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _torchvision(name: str) -> Any:
    try:
        import torchvision.models as models
    except Exception as exc:  # its compiled extension fails in many ways on a mismatched torch
        raise ConversionError(
            f"torchvision does not import here ({type(exc).__name__}: {str(exc)[:120]}); install the torchvision "
            "build that matches your torch, or pass your own PKG.MODULE:CALLABLE: governor.runtime.zoo has "
            "torchvision's architectures, state_dict-compatible, e.g. governor.runtime.zoo:resnet18"
        ) from exc
    factory = getattr(models, name, None)
    if not callable(factory) or name.startswith("_"):
        raise ConversionError(f"torchvision.models has no model {name!r}; see torchvision.models.list_models()")
    return factory


def _user_callable(module_name: str, name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:  # as `python -m` would: the user's own package, run from its directory
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConversionError(f"cannot import {module_name!r} ({exc}); run from the directory that holds it or "
                              "install its package") from exc
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ConversionError(f"{module_name} has no callable {name!r}")
    return factory


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a state_dict file (``torch.save(model.state_dict())``) with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ConversionError(f"weights file {path} does not exist") from exc
    except Exception as exc:  # unpickling refusals and corrupt files come as many types
        raise ConversionError(f"{path} is not a state_dict file torch can load safely ({exc}); save it with "
                              "torch.save(model.state_dict(), path)") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConversionError(f"{path} holds {type(state).__name__}, not a state_dict")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConversionError(f"{path} does not fit the model: {str(exc).splitlines()[0]} (see "
                              "load_state_dict's message for the keys)") from exc


def check_equivalence(module: nn.Module, net: Any, input_shape: tuple[int, ...], seed: int = 0) -> float:
    """Max |converted - original| / max |original| at k = G, on two random inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *input_shape, generator=gen)
    was = module.training
    module.eval()
    if hasattr(net, "set_active_groups") and hasattr(net, "groups"):
        net.set_active_groups(net.groups)
    try:
        with torch.no_grad():
            mean = getattr(net, "input_mean", None)
            std = getattr(net, "input_std", None)
            ref = module((x - mean) / std if mean is not None and std is not None else x)
            out = net(x)
    finally:
        module.train(was)
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def output_count(net: Any, shape: tuple[int, int, int]) -> int | None:
    """Number of classes the network outputs, or None when its output is not (N, classes)."""
    with torch.no_grad():
        out = net(torch.zeros(1, *shape))
    return int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
