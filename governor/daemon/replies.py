"""Turning core values into protocol replies and telemetry (and budgets the other way)."""

from __future__ import annotations

from governor.core import protocol as p
from governor.core.optimise import Budget, Decision, Objective
from governor.core.types import Observation

__all__ = ["core_budget", "domains_info", "estimate", "met"]


def core_budget(budget: p.Budget) -> Budget:
    return Budget(budget.deadline_ms, budget.energy_mj, budget.min_accuracy, Objective(budget.objective))


def estimate(decision: Decision, *, energy_known: bool) -> p.Estimate:
    return p.Estimate(
        latency_ms=min(decision.latency_ms, p.MAX_DEADLINE_MS),
        energy_mj=min(decision.energy_mj, p.MAX_ENERGY_MJ) if energy_known else None,
        accuracy=decision.accuracy if 0 <= decision.accuracy <= 1 else None,
    )


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
