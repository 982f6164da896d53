"""Turning core values into protocol replies and telemetry (and budgets the other way)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np

from governor.core import protocol as p
from governor.core.decision.optimiser import Decision, Demand, Objective
from governor.core.modelmeta import IMAGENET, ModelMeta
from governor.core.types import Observation, OperatingPoint, frozen_map

__all__ = [
    "AdviceFrames",
    "InferFrames",
    "domains_info",
    "estimate",
    "met",
    "model_interface",
    "to_demand",
    "wire_name",
    "wire_observation",
]

_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.:/+-]")
_MAX_HZ = 100_000_000_000
_TEXT = 4096


def to_demand(budget: p.Budget, default: Objective) -> Demand:
    """The machine's budget for a wire budget; ``default`` (``[policy] objective``) where it names none."""
    objective = default if budget.objective is None else Objective(budget.objective)
    return Demand(budget.deadline_ms, budget.energy_mj, budget.min_accuracy, objective)


# The raw value range of the datasets `governor train` reads: the network normalises inside itself, so a
# client sends pixels on this scale (digits divided by 16 changed 31 of 32 correct answers into 7).
_RAW_RANGE = {"digits": (0.0, 16.0), "cifar10": (0.0, 255.0)}


def model_interface(meta: ModelMeta, max_batch: int) -> p.ModelInterface:
    """What ``infer`` takes and gives for this model: one raw-value input, one logits output."""
    dataset = meta.training.dataset
    # the file holds float32: the shortest decimal with the same float32 (0.485, not 0.48500001430511475)
    mean = tuple(float(str(np.float32(v))) for v in meta.input_mean)
    std = tuple(float(str(np.float32(v))) for v in meta.input_std)
    # "digits", "cifar10:DIR", or "digits (fine-tuned converted:...)" after `governor train --from`
    value_range = _RAW_RANGE.get(dataset.split(":")[0].split(" ")[0])
    if dataset.startswith("converted:"):
        source = dataset.removeprefix("converted:")
        identity = all(v == 0 for v in mean) and all(v == 1 for v in std)
        if (mean, std) == IMAGENET:
            value_range = (0.0, 1.0)
            scale = "RGB values scaled to 0..1; do not normalise: the network applies the ImageNet mean and std itself"
        elif identity:
            scale = f"what {source} takes as its input: no normalisation was set when it was converted"
        else:
            scale = (f"what {source} took before its normalisation; do not normalise: the network subtracts "
                     "mean and divides by std per channel itself")
    else:
        scale = (f"raw values as in the training data ({dataset}: {value_range[0]:g}..{value_range[1]:g}); "
                 if value_range else f"raw values on the scale of the training data ({dataset}); ")
        scale += "do not normalise: the network subtracts mean and divides by std per channel itself"
    shape = ", ".join(map(str, meta.input_shape))
    scale += f"; send (N, {shape}) or ({shape}), float32"
    return p.ModelInterface(
        inputs=(p.InputInfo(shape=meta.input_shape, max_batch=max_batch, mean=mean, std=std,
                            value_range=value_range, scale=scale[:4096]),),
        outputs=(p.OutputInfo(classes=tuple(c[:128] for c in meta.classes)),),
    )


def estimate(decision: Decision, *, energy_known: bool, accuracy_known: bool = True) -> p.Estimate:
    """The wire estimate of a decision; energy and accuracy only where the model measured them (a
    converted model's file has no accuracies until `governor train --from` measures them)."""
    latency_ms, energy_mj, accuracy = predicted_numbers(decision, energy_known=energy_known,
                                                        accuracy_known=accuracy_known)
    return p.Estimate(latency_ms=latency_ms, energy_mj=energy_mj, accuracy=accuracy)


def predicted_numbers(decision: Decision, *, energy_known: bool,
                      accuracy_known: bool) -> tuple[float, float | None, float | None]:
    """What :func:`estimate` carries, as plain numbers: latency (ms), energy (mJ) and accuracy or None."""
    return (min(decision.latency_ms, p.MAX_DEADLINE_MS),
            min(decision.energy_mj, p.MAX_ENERGY_MJ) if energy_known else None,
            decision.accuracy if accuracy_known and 0 <= decision.accuracy <= 1 else None)


class AdviceFrames:
    """Encoded ``advise`` replies split around the id, per decision (table row, predictions, flags).

    An application asks with the same few budgets between runs, and the daemon answers with the same
    point and predictions but for the id: building and encoding that reply cost a third of the daemon's
    time per ``advise``. A hit is a decision equal in every field the reply carries; the id was checked
    against the protocol's id pattern by the decoder, so it goes into the JSON as it is. Bounded:
    at most ``size`` replies, the oldest forgotten first."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._known: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}

    def frames(self, request_id: str, decision: Decision, *, energy_known: bool, simulated: bool,
               accuracy_known: bool = True) -> list[p.Frame]:
        key = (decision.index, decision.latency_ms, decision.energy_mj, decision.accuracy, decision.infeasible,
               energy_known, simulated, accuracy_known)
        template = self._known.get(key)
        if template is None:
            reply = p.AdviseReply(id="", point=p.Point.from_operating_point(decision.point),
                                  predicted=estimate(decision, energy_known=energy_known,
                                                     accuracy_known=accuracy_known),
                                  budget_infeasible=decision.infeasible, simulated=simulated)
            header = bytes(p.encode_reply(reply)[0])
            cut = header.index(b'"id":""') + len(b'"id":"')  # the encoder writes v, type and id first
            template = self._known[key] = (header[:cut], header[cut:])
            if len(self._known) > self.size:
                del self._known[next(iter(self._known))]
        return [template[0] + request_id.encode() + template[1]]

    def __len__(self) -> int:
        return len(self._known)


class InferFrames:
    """``infer`` reply headers written from parts: the point encoded once per table row, the numbers the
    decision predicted and the run measured written in per reply.

    Building the reply's models and encoding them cost 140 us per infer in a real daemon (its Python runs
    cold after each forward pass). The prediction's numbers move with every learned residual, so a cache
    keyed by them missed on every infer: only the point, a function of the row, is kept. The header
    equals the encoder's but for field order and number spelling, which JSON readers ignore; a test
    decodes both and compares. Anything unusual (an output the protocol cannot carry as it is, a number
    outside its bounds) returns None, and the caller encodes the reply in full, which also says what is
    wrong with it. Bounded like :class:`AdviceFrames`."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._points: dict[int, tuple[str, p.Point, OperatingPoint]] = {}  # table row -> (JSON, model, point)

    def point(self, decision: Decision) -> p.Point:
        """The reply's point for ``decision`` (built once per table row)."""
        return self._point(decision)[1]

    def frames(self, request_id: str, decision: Decision, *, energy_known: bool, simulated: bool,
               accuracy_known: bool, latency_ms: float, energy_mj: float | None, budget_met: bool,
               total_ms: float | None, output: Any) -> list[Any] | None:
        if not isinstance(output, np.ndarray) or not output.flags.c_contiguous or output.dtype.str not in p.DTYPES:
            return None
        predicted_ms, predicted_mj, accuracy = predicted_numbers(decision, energy_known=energy_known,
                                                                 accuracy_known=accuracy_known)
        numbers = [latency_ms, predicted_ms] + [v for v in (energy_mj, total_ms, predicted_mj) if v is not None]
        if not all(math.isfinite(v) and v >= 0 for v in numbers) or latency_ms > p.MAX_DEADLINE_MS or (
                energy_mj is not None and energy_mj > p.MAX_ENERGY_MJ) or (
                total_ms is not None and total_ms > p.MAX_DEADLINE_MS):
            return None
        predicted = f'"latency_ms":{float(predicted_ms)!r}'
        if predicted_mj is not None:
            predicted += f',"energy_mj":{float(predicted_mj)!r}'
        measured = f'"latency_ms":{float(latency_ms)!r}'
        if energy_mj is not None:
            measured += f',"energy_mj":{float(energy_mj)!r}'
        if accuracy is not None:
            predicted += f',"accuracy":{float(accuracy)!r}'
            measured += f',"accuracy":{float(accuracy)!r}'
        spec = (f'[{{"name":"output","dtype":"{output.dtype.str}","shape":[{",".join(map(str, output.shape))}],'
                f'"nbytes":{output.nbytes}}}]')
        header = (f'{{"v":"{p.PROTOCOL_VERSION}","type":"infer","id":"{request_id}","tensors":{spec},'
                  f'"point":{self._point(decision)[0]},"predicted":{{{predicted}}},'
                  f'"measured":{{{measured}}},"budget_met":{"true" if budget_met else "false"},'
                  f'"budget_infeasible":{"true" if decision.infeasible else "false"},'
                  f'"simulated":{"true" if simulated else "false"}'
                  + ("" if total_ms is None else f',"total_ms":{float(total_ms)!r}') + "}")
        return [header.encode(), output.data.cast("B") if output.size else memoryview(b"")]

    def _point(self, decision: Decision) -> tuple[str, p.Point, OperatingPoint]:
        known = self._points.get(decision.index)
        # The table hands out its own point objects, so a hit is an identity; equality covers another table.
        if known is None or (known[2] is not decision.point and known[2] != decision.point):
            point = p.Point.from_operating_point(decision.point)
            known = self._points[decision.index] = (point.model_dump_json(exclude_defaults=True), point,
                                                    decision.point)
            if len(self._points) > self.size:
                del self._points[next(iter(self._points))]
        return known

    def __len__(self) -> int:
        return len(self._points)


def met(budget: p.Budget, total_ms: float, energy_mj: float | None, accuracy: float) -> bool:
    """Measured outcome within the budget: end-to-end time (queue + run), energy when measured."""
    if budget.deadline_ms is not None and total_ms > budget.deadline_ms:
        return False
    if budget.energy_mj is not None and energy_mj is not None and energy_mj > budget.energy_mj:
        return False
    return not (budget.min_accuracy is not None and accuracy < budget.min_accuracy)


def domains_info(obs: Observation | None) -> dict[str, p.DomainInfo]:
    if obs is None:
        return {}
    return {n: p.DomainInfo(cur_hz=r.cur_hz, min_hz=r.min_hz, max_hz=r.max_hz) for n, r in obs.domains.items()}


def wire_name(name: str) -> str:
    """``name`` in the protocol's name alphabet: kernel zone types may hold '@' or blanks."""
    cleaned = _NOT_IN_NAMES.sub("_", name)[:64]
    return cleaned if cleaned[:1].isalnum() else ("x" + cleaned)[:64]


def wire_observation(obs: Observation) -> Observation:
    """``obs`` as the protocol can carry it: names rewritten into its alphabet, and readings outside its
    bounds (a sensor fault: millions of °C, negative mW) left out and listed in ``unavailable``.

    A faulty sensor must cost its reading, never the telemetry or ``status`` of the whole board.
    """
    problems: list[str] = []

    def keep(values: Mapping[str, float], what: str, lo: float, hi: float) -> Mapping[str, float]:
        good = {}
        for name, value in values.items():
            if math.isfinite(value) and lo <= value <= hi:
                good[wire_name(name)] = float(value)
            else:
                problems.append(f"{name}: {what} reading {value!r} is outside {lo:g}..{hi:g} (sensor fault?)")
        return frozen_map(good)

    domains = {}
    for name, reading in obs.domains.items():
        if all(0 <= hz <= _MAX_HZ for hz in (reading.cur_hz, reading.min_hz, reading.max_hz)):
            domains[wire_name(name)] = reading
        else:
            problems.append(f"{name}: frequency reading {reading} is outside 0..{_MAX_HZ} Hz")
    total = keep({"total_power": obs.total_power_mw}, "power (mW)", 0, 1e7) if obs.total_power_mw is not None else {}
    return replace(
        obs, domains=MappingProxyType(domains), power_mw=keep(obs.power_mw, "power (mW)", 0, 1e7),
        total_power_mw=total.get("total_power"), temps_c=keep(obs.temps_c, "temperature (°C)", -300, 1000),
        util=keep(obs.util, "busy fraction", 0, 1),
        unavailable=tuple(u[:_TEXT] for u in (*obs.unavailable, *problems)))
