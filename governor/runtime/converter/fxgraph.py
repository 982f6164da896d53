"""Trace a user's module with torch.fx into a flat list of ops the runtime knows (``RawNode``).

Why fx and a concrete run: ``symbolic_trace`` gives the graph, and one batch-1 run through an
``Interpreter`` gives every value (shapes, and the integers that shape arithmetic such as a channel
shuffle's ``x.size()`` produces). Ops that only move data (view, reshape, transpose, chunk, split,
slicing, flatten) are not kept as such: they are replayed on a tensor of position codes, and what
reaches a real op is classified as a channel *gather* (a split part, a shuffle) and/or a *flatten*.
Anything that mixes channels with other axes, and any op not in the table below, is refused with
the node's name, its op and what to do.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn


class ConversionError(ValueError):
    """The module cannot be converted; the message names the graph node, its op and what to do."""


@dataclass
class RawNode:
    """One op before channel analysis. ``shape`` is the output's, at batch 1."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    gather: np.ndarray | None = None  # for op "gather": input channel positions, in output order


_UNARY_MODULES: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid",
    nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Tanh: "tanh",
}
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_UNARY_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "silu",
    torch.tanh: "tanh", F.tanh: "tanh", F.gelu: "gelu",
}
_UNARY_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "relu_": "relu", "sigmoid_": "sigmoid"}
_BINARY = {operator.add: "add", torch.add: "add", operator.iadd: "add", operator.mul: "mul", torch.mul: "mul",
           operator.imul: "mul", "add": "add", "mul": "mul", "add_": "add", "mul_": "mul"}
_MOVEMENT_FUNCTIONS = {torch.flatten, torch.reshape, torch.transpose, torch.chunk, torch.split, torch.squeeze,
                       torch.unsqueeze, operator.getitem}
_MOVEMENT_METHODS = {"view", "reshape", "transpose", "contiguous", "chunk", "split", "flatten", "squeeze",
                     "unsqueeze"}


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, Tensor) else ()


class _Recorder(torch.fx.Interpreter):
    """Runs the traced graph once and keeps every node's value."""

    def __init__(self, gm: torch.fx.GraphModule):
        super().__init__(gm)
        self.values: dict[torch.fx.Node, Any] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        value = super().run_node(n)
        self.values[n] = value
        return value


class _Tracer:
    def __init__(self, module: nn.Module, input_shape: tuple[int, int, int]):
        module.eval()
        try:
            self.gm = torch.fx.symbolic_trace(module)
        except Exception as exc:  # fx raises many types; all mean "not traceable as written"
            raise ConversionError(
                f"torch.fx cannot trace the module ({type(exc).__name__}: {exc}); make its forward free of "
                "data-dependent control flow (branch on attributes such as self.training, not on tensor values)"
            ) from exc
        self.modules = dict(self.gm.named_modules())
        recorder = _Recorder(self.gm)
        with torch.no_grad():
            recorder.run(torch.zeros(1, *input_shape))
        self.values = recorder.values
        self.nodes: list[RawNode] = []
        self.alias: dict[torch.fx.Node, str] = {}  # fx node -> name of the raw node holding its value
        self.codes: dict[torch.fx.Node, tuple[str, Tensor]] = {}  # movement value -> (root, position codes)
        self.output: str = ""

    # -- helpers ---------------------------------------------------------------------------------
    def fail(self, n: torch.fx.Node, why: str) -> ConversionError:
        return ConversionError(f"graph node {n.name!r} ({n.op} {_target_name(n)}): {why}")

    def emit(self, n: torch.fx.Node | str, op: str, inputs: list[str], value: Any, **kw: Any) -> str:
        name = n if isinstance(n, str) else n.name
        self.nodes.append(RawNode(name, op, inputs, _shape(value), **kw))
        if not isinstance(n, str):
            self.alias[n] = name
        return name

    def tensor_input(self, n: torch.fx.Node, arg: Any) -> str:
        """The raw node holding tensor argument ``arg`` of ``n``, materialising moved values."""
        if not isinstance(arg, torch.fx.Node):
            raise self.fail(n, f"expected a tensor argument, got {arg!r}")
        if arg in self.alias:
            return self.alias[arg]
        if arg in self.codes:
            return self.materialise(arg)
        raise self.fail(n, f"its input {arg.name!r} is not a tensor this converter understands")

    def concrete(self, arg: Any) -> Any:
        """Non-tensor arguments as the recorded run saw them (ints from x.size(), tuples, ...)."""
        if isinstance(arg, torch.fx.Node):
            return self.values[arg]
        if isinstance(arg, tuple | list):
            return type(arg)(self.concrete(a) for a in arg)
        return arg

    # -- movement ----------------------------------------------------------------------------------
    def codes_of(self, n: torch.fx.Node, arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node):
            if arg in self.codes:
                return self.codes[arg][1]
            if arg in self.alias and isinstance(self.values[arg], Tensor):
                value = self.values[arg]
                return torch.arange(value.numel(), dtype=torch.float64).view(value.shape)
            return self.values[arg]
        if isinstance(arg, tuple | list):
            return type(arg)(self.codes_of(n, a) for a in arg)
        return arg

    def root_of(self, n: torch.fx.Node) -> str | None:
        for arg in n.all_input_nodes:
            if arg in self.codes:
                return self.codes[arg][0]
            if arg in self.alias and isinstance(self.values[arg], Tensor):
                return self.alias[arg]
        return None

    def movement(self, n: torch.fx.Node) -> None:
        root = self.root_of(n)
        if root is None:  # shape arithmetic on sizes: nothing to emit
            return
        args, kwargs = self.codes_of(n, n.args), {k: self.codes_of(n, v) for k, v in n.kwargs.items()}
        if n.op == "call_method":
            result = getattr(args[0], str(n.target))(*args[1:], **kwargs)
        elif n.op == "call_module":
            result = self.modules[str(n.target)](*args, **kwargs)
        else:
            result = n.target(*args, **kwargs)  # type: ignore[operator]
        self.codes[n] = (root, result)

    def materialise(self, n: torch.fx.Node) -> str:
        root, code = self.codes[n]
        if not isinstance(code, Tensor):
            raise self.fail(n, "a tuple of tensors reaches an op; index it first")
        source = next(r for r in self.nodes if r.name == root)
        if len(source.shape) < 2:
            raise self.fail(n, "reshapes a tensor without a channel axis")
        channels, spatial = source.shape[1], math.prod(source.shape[2:])
        flat = code.reshape(-1).to(torch.int64).numpy()
        channel, pos = flat // spatial, flat % spatial
        value = self.values[n]
        if code.dim() == len(source.shape) and tuple(code.shape[2:]) == tuple(source.shape[2:]):
            per = channel.reshape(code.shape[1], -1)
            if (per == per[:, :1]).all() and (pos.reshape(per.shape) == np.arange(spatial)).all():
                index = per[:, 0]
                if len(index) == channels and (index == np.arange(channels)).all():
                    self.alias[n] = root
                    return root
                return self.emit(n, "gather", [root], value, gather=index)
        if code.dim() == 2 and spatial > 1 and code.shape[1] % spatial == 0:
            per = channel.reshape(-1, spatial)
            if (per == per[:, :1]).all() and (pos.reshape(per.shape) == np.arange(spatial)).all():
                index, name = per[:, 0], root
                if not (len(index) == channels and (index == np.arange(channels)).all()):
                    gathered = (1, len(index), *source.shape[2:])
                    name = self.emit(f"{n.name}_gather", "gather", [root], torch.empty(gathered), gather=index)
                return self.emit(n, "flatten", [name], value)
        if code.dim() == 2 and spatial == 1:
            index = channel
            if len(index) == channels and (index == np.arange(channels)).all():
                return self.emit(n, "flatten", [root], value)
            name = self.emit(f"{n.name}_gather", "gather", [root], torch.empty(1, len(index), *source.shape[2:]),
                             gather=index)
            return self.emit(n, "flatten", [name], value)
        raise self.fail(n, "reshapes channels together with other axes, which cannot be split into channel groups; "
                           "rewrite it as a flatten, a split or a channel shuffle")

    # -- ops -----------------------------------------------------------------------------------------
    def run(self) -> list[RawNode]:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ConversionError(f"the module's forward takes {len(placeholders)} inputs; "
                                  "it must take one image batch")
        for n in self.gm.graph.nodes:
            self.visit(n)
        return self.nodes

    def visit(self, n: torch.fx.Node) -> None:
        if n.op == "placeholder":
            self.emit("input", "input", [], self.values[n])
            self.alias[n] = "input"
        elif n.op == "output":
            out = n.args[0]
            if not isinstance(out, torch.fx.Node) or not isinstance(self.values.get(out), Tensor):
                raise self.fail(n, "the module returns more than one tensor; return the logits only "
                                   "(e.g. aux_logits=False)")
            self.output = self.tensor_input(n, out)
        elif n.op == "get_attr":
            value = self.values[n]
            if isinstance(value, Tensor):
                self.emit(n, "constant", [], value, tensors={"value": value.detach().clone().float()})
        elif n.op == "call_module":
            self.visit_module(n, self.modules[str(n.target)])
        elif n.op == "call_method":
            self.visit_call(n, str(n.target))
        else:
            self.visit_call(n, n.target)

    def visit_module(self, n: torch.fx.Node, m: nn.Module) -> None:
        value = self.values[n]
        if isinstance(m, _IDENTITY_MODULES):
            self.alias[n] = self.tensor_input(n, n.args[0])
        elif isinstance(m, nn.Flatten):
            self.movement(n)
        elif isinstance(m, nn.Conv2d):
            self.conv(n, m, value)
        elif isinstance(m, nn.Linear):
            tensors = {"weight": m.weight.detach().clone()}
            if m.bias is not None:
                tensors["bias"] = m.bias.detach().clone()
            self.emit(n, "linear", [self.tensor_input(n, n.args[0])], value, tensors=tensors)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            self.batch_norm(n, m, value)
        elif isinstance(m, nn.LayerNorm):
            self.layer_norm(n, tuple(m.normalized_shape), m.weight, m.bias, m.eps, value)
        elif type(m) in _UNARY_MODULES or isinstance(m, nn.ReLU6):
            op = "relu6" if isinstance(m, nn.ReLU6) else _UNARY_MODULES[type(m)]
            self.emit(n, op, [self.tensor_input(n, n.args[0])], value)
        elif isinstance(m, nn.GELU):
            self.emit(n, "gelu", [self.tensor_input(n, n.args[0])], value, attrs={"approximate": m.approximate})
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            self.pool(n, m, value)
        else:
            raise self.fail(n, f"module type {type(m).__module__}.{type(m).__name__} is not supported; replace it "
                               "with standard torch.nn layers or file an issue with this message")

    def conv(self, n: torch.fx.Node, m: nn.Conv2d, value: Tensor) -> None:
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise self.fail(n, f"padding {m.padding!r} / padding_mode {m.padding_mode!r} is not supported; "
                               "use integer zero padding")
        tensors = {"weight": m.weight.detach().clone()}
        if m.bias is not None:
            tensors["bias"] = m.bias.detach().clone()
        attrs = {"stride": _pair(m.stride), "padding": _pair(m.padding), "dilation": _pair(m.dilation),
                 "groups": int(m.groups)}
        self.emit(n, "conv2d", [self.tensor_input(n, n.args[0])], value, attrs=attrs, tensors=tensors)

    def batch_norm(self, n: torch.fx.Node, m: nn.modules.batchnorm._BatchNorm, value: Tensor) -> None:
        if m.running_mean is None or m.running_var is None:
            raise self.fail(n, "batch norm without running statistics (track_running_stats=False) is not supported")
        c = m.num_features
        tensors = {
            "weight": m.weight.detach().clone() if m.weight is not None else torch.ones(c),
            "bias": m.bias.detach().clone() if m.bias is not None else torch.zeros(c),
            "running_mean": m.running_mean.detach().clone(), "running_var": m.running_var.detach().clone(),
        }
        attrs = {"eps": float(m.eps), "momentum": float(m.momentum if m.momentum is not None else 0.1)}
        self.emit(n, "batch_norm", [self.tensor_input(n, n.args[0])], value, attrs=attrs, tensors=tensors)

    def layer_norm(self, n: torch.fx.Node, shape: tuple[int, ...], weight: Any, bias: Any, eps: float,
                   value: Tensor) -> None:
        if len(shape) != 1:
            raise self.fail(n, f"layer norm over {shape} is not supported; normalise over the channel axis only")
        c = shape[0]
        tensors = {"weight": weight.detach().clone() if weight is not None else torch.ones(c),
                   "bias": bias.detach().clone() if bias is not None else torch.zeros(c)}
        self.emit(n, "layer_norm", [self.tensor_input(n, n.args[0])], value, attrs={"eps": float(eps)},
                  tensors=tensors)

    def pool(self, n: torch.fx.Node, m: nn.Module, value: Tensor) -> None:
        x = [self.tensor_input(n, n.args[0])]
        if isinstance(m, nn.AdaptiveAvgPool2d):
            self.emit(n, "adaptive_avg_pool2d", x, value, attrs={"size": tuple(value.shape[-2:])})
        elif isinstance(m, nn.MaxPool2d):
            stride = m.stride if m.stride is not None else m.kernel_size
            self.emit(n, "max_pool2d", x, value, attrs={
                "kernel": _pair(m.kernel_size), "stride": _pair(stride), "padding": _pair(m.padding),
                "dilation": _pair(m.dilation), "ceil_mode": bool(m.ceil_mode)})
        else:
            assert isinstance(m, nn.AvgPool2d)
            stride = m.stride if m.stride is not None else m.kernel_size
            self.emit(n, "avg_pool2d", x, value, attrs={
                "kernel": _pair(m.kernel_size), "stride": _pair(stride), "padding": _pair(m.padding),
                "ceil_mode": bool(m.ceil_mode), "count_include_pad": bool(m.count_include_pad)})

    def visit_call(self, n: torch.fx.Node, target: Any) -> None:
        raw = self.values[n]
        if not isinstance(raw, Tensor) and not (isinstance(raw, tuple | list) and raw and isinstance(raw[0], Tensor)):
            return  # sizes, shape arithmetic: only movement ops read them, concretely
        value: Any = raw
        if target in _MOVEMENT_METHODS or target in _MOVEMENT_FUNCTIONS:
            self.movement(n)
        elif target in (F.dropout, "dropout") or target == "contiguous":
            self.alias[n] = self.tensor_input(n, n.args[0])
        elif target in _UNARY_FUNCTIONS or target in _UNARY_METHODS:
            op = _UNARY_FUNCTIONS.get(target) or _UNARY_METHODS[target]
            attrs = {"approximate": n.kwargs.get("approximate", "none")} if op == "gelu" else {}
            self.emit(n, op, [self.tensor_input(n, n.args[0])], value, attrs=attrs)
        elif target in _BINARY or target in (operator.truediv, operator.sub, "div", "sub"):
            self.binary(n, target, value)
        elif target is torch.cat:
            self.cat(n, value)
        elif target in (torch.permute, "permute"):
            order: Any = n.args[1:] if target == "permute" and len(n.args) > 2 else self.concrete(n.args[1])
            self.emit(n, "permute", [self.tensor_input(n, n.args[0])], value,
                      attrs={"dims": tuple(int(d) for d in order)})
        elif target is F.layer_norm:
            args = [self.concrete(a) for a in n.args[1:]]
            kw = {k: self.concrete(v) for k, v in n.kwargs.items()}
            shape = tuple(args[0] if args else kw["normalized_shape"])
            weight = args[1] if len(args) > 1 else kw.get("weight")
            bias = args[2] if len(args) > 2 else kw.get("bias")
            eps = args[3] if len(args) > 3 else kw.get("eps", 1e-5)
            self.layer_norm(n, shape, weight, bias, float(eps), value)
        elif target in (F.adaptive_avg_pool2d,):
            self.emit(n, "adaptive_avg_pool2d", [self.tensor_input(n, n.args[0])], value,
                      attrs={"size": tuple(value.shape[-2:])})
        elif target in (F.max_pool2d, F.avg_pool2d):
            self.functional_pool(n, target, value)
        elif target in (torch.mean, "mean"):
            dims: Any = self.concrete(n.args[1] if len(n.args) > 1 else n.kwargs.get("dim"))
            dims = (dims,) if isinstance(dims, int) else tuple(dims)
            x_rank = len(_shape(self.values[n.args[0]]))  # type: ignore[index]  # fx args are untyped
            dims = tuple(d % x_rank for d in dims)
            keep = bool(n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False))
            if 0 in dims or 1 in dims:
                raise self.fail(n, "a mean over the batch or channel axis cannot be split into channel groups")
            self.emit(n, "mean", [self.tensor_input(n, n.args[0])], value, attrs={"dims": dims, "keepdim": keep})
        else:
            raise self.fail(n, "this op is not supported by governor convert; express it with standard torch.nn "
                               "layers (docs/models.md lists the supported ops) or file an issue with this message")

    def functional_pool(self, n: torch.fx.Node, target: Callable[..., Any], value: Tensor) -> None:
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode") if target is F.max_pool2d else \
            ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        given = dict(zip(names, (self.concrete(a) for a in n.args[1:]), strict=False))
        given.update({k: self.concrete(v) for k, v in n.kwargs.items()})
        kernel = _pair(given["kernel_size"])
        stride = _pair(given.get("stride") or kernel)
        attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "padding": _pair(given.get("padding", 0)),
                                 "ceil_mode": bool(given.get("ceil_mode", False))}
        if target is F.max_pool2d:
            attrs["dilation"] = _pair(given.get("dilation", 1))
            op = "max_pool2d"
        else:
            attrs["count_include_pad"] = bool(given.get("count_include_pad", True))
            op = "avg_pool2d"
        self.emit(n, op, [self.tensor_input(n, n.args[0])], value, attrs=attrs)

    def binary(self, n: torch.fx.Node, target: Any, value: Tensor) -> None:
        a, b = n.args[0], n.args[1]
        tensors = [arg for arg in (a, b) if isinstance(arg, torch.fx.Node) and isinstance(self.values[arg], Tensor)]
        if n.kwargs.get("alpha", 1) != 1:
            raise self.fail(n, "add with alpha is not supported")
        if len(tensors) == 2:
            if target in (operator.truediv, operator.sub, "div", "sub"):
                raise self.fail(n, "division or subtraction of two tensors is not supported")
            self.emit(n, _BINARY[target], [self.tensor_input(n, a), self.tensor_input(n, b)], value)
            return
        scalar = self.concrete(b if tensors[0] is a else a)
        if not isinstance(scalar, int | float):
            raise self.fail(n, f"operand {scalar!r} is neither a tensor nor a number")
        x = self.tensor_input(n, tensors[0])
        if target in (operator.truediv, "div"):
            if tensors[0] is not a:
                raise self.fail(n, "a number divided by a tensor is not supported")
            self.emit(n, "mul_scalar", [x], value, attrs={"value": 1.0 / float(scalar)})
        elif target in (operator.sub, "sub"):
            if tensors[0] is not a:
                raise self.fail(n, "a number minus a tensor is not supported")
            self.emit(n, "add_scalar", [x], value, attrs={"value": -float(scalar)})
        else:
            op = "add_scalar" if _BINARY[target] == "add" else "mul_scalar"
            self.emit(n, op, [x], value, attrs={"value": float(scalar)})

    def cat(self, n: torch.fx.Node, value: Tensor) -> None:
        parts = n.args[0]
        dim: Any = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        if not isinstance(parts, list | tuple):
            raise self.fail(n, "torch.cat of something other than a list of tensors")
        if int(dim) % value.dim() != 1:
            raise self.fail(n, f"concatenation along axis {dim} is not supported; only the channel axis (1) is")
        self.emit(n, "cat", [self.tensor_input(n, p) for p in parts], value)


def _target_name(n: torch.fx.Node) -> str:
    target = n.target
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", repr(target))


def trace(module: nn.Module, input_shape: tuple[int, int, int]) -> tuple[list[RawNode], str]:
    """Raw ops of ``module`` (in eval mode) on one input of ``input_shape``, and the output node's name."""
    tracer = _Tracer(module, input_shape)
    nodes = tracer.run()
    return nodes, tracer.output
