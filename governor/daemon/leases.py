"""The daemon's lease table (protocol 1.1): lease ids, their owners and expiry, and the wire messages.

Every choice about a lease (when it is granted, at which point, what is learned from its release) is
the machine's; this desk only translates. ``acquire`` becomes a machine ``Request`` (queued); the
machine's ``Grant`` becomes the ``lease`` reply; ``release`` becomes the lease's ``Outcome`` (or
``Failed``) and, once the machine has replied, the ``released`` reply; a lease whose time is up on the
daemon's clock becomes ``Expired``. A release that comes late, twice, or from another client gets a
typed error. A client that disconnects simply leaves its lease to expire.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from governor.core import protocol as p
from governor.core.decision import machine as m
from governor.daemon.replies import estimate, met
from governor.daemon.requests import LATENCY_PER_TTL, RequestKey, same_client

if TYPE_CHECKING:
    from governor.daemon.service import Daemon

__all__ = ["LeaseDesk"]

log = logging.getLogger("governor.daemon")


@dataclass
class _Lease:
    """A lease from its ``acquire`` to its end; ``lease_id``, ``decision`` and the times are set when granted."""

    request: p.AcquireRequest
    identity: Any  # the connection that sent the acquire (the reply goes to every socket that asked)
    key: RequestKey | None  # how resends of the acquire are recognised (None without an id)
    machine_key: int
    arrival_t: float  # daemon clock, s
    ttl_s: float
    owners: tuple[Any, ...] = ()
    lease_id: str = ""
    decision: Any = None
    granted_t: float = 0.0
    expires_t: float = math.inf
    power_mw: list[float] = field(default_factory=list)  # board power the loop read while it was outstanding


@dataclass
class _Releasing:
    lease: _Lease
    request: p.ReleaseRequest
    identity: Any
    key: RequestKey | None
    energy_mj: float | None


class LeaseDesk:
    """The leases of one daemon loop; see the module doc."""

    def __init__(self, daemon: Daemon, default_ttl_ms: float) -> None:
        self._d = daemon
        self.default_ttl_ms = default_ttl_ms
        self._pending: dict[int, _Lease] = {}  # queued in the machine, by its key
        self._leases: dict[str, _Lease] = {}  # granted and outstanding, by lease id
        self._releasing: dict[int, _Releasing] = {}  # a release the machine answers, by its key
        self._last_power_mw: float | None = None

    def __len__(self) -> int:
        return len(self._leases)

    @property
    def next_expiry(self) -> float:
        """When the next outstanding lease expires (daemon clock, s)."""
        return min((lease.expires_t for lease in self._leases.values()), default=math.inf)

    # -- requests -------------------------------------------------------------------------------
    def acquire(self, msg: p.AcquireRequest, identity: Any) -> None:
        d = self._d
        d.check_model(msg)
        key = d.new_key()
        ttl_ms = msg.ttl_ms if msg.ttl_ms is not None else self.default_ttl_ms
        refused = [a for a in d.machine.handle(m.Request(d.arrival_t, key, d.demand(msg.budget), msg.strict,
                                                         lease=True, expected_ms=msg.expected_ms))
                   if isinstance(a, m.Refuse)]
        if refused:
            raise p.ProtocolError(refused[0].code, refused[0].message, request_id=msg.id)
        self._pending[key] = _Lease(msg, identity, d.request_key, key, d.arrival_t, ttl_ms / 1000.0)
        d.requests.queued(d.request_key, identity)

    def release(self, msg: p.ReleaseRequest, identity: Any) -> None:
        d = self._d
        lease = self._leases.get(msg.lease_id)
        if lease is not None and d.arrival_t >= lease.expires_t:  # late, though the loop had not seen it yet
            self._expire(lease, d.arrival_t)
            lease = None
        if lease is None:
            how, ms = d.ended.get(msg.lease_id, ("", 0.0))
            if how == "expired":
                raise p.ProtocolError("expired", f"lease {msg.lease_id} expired after {ms:.0f} ms without a release; "
                                      "the clocks went back to the idle policy and nothing was learned from this run; "
                                      "acquire again (with a longer ttl_ms if the run needs it)", request_id=msg.id)
            if how == "released":
                raise p.ProtocolError("bad_request", f"lease {msg.lease_id} was released already; a lease is "
                                      "released once: acquire a new one for the next run", request_id=msg.id)
            raise p.ProtocolError("bad_request", f"unknown lease id {msg.lease_id!r}: this daemon granted no such "
                                  "lease (or forgot it long ago); release the lease_id an acquire returned",
                                  request_id=msg.id)
        if identity not in lease.owners and not same_client(msg.id, lease.request.id):
            raise p.ProtocolError("bad_request", f"lease {msg.lease_id} was acquired by another client: only the "
                                  "client that acquired a lease may release it", request_id=msg.id)
        if msg.latency_ms > LATENCY_PER_TTL * lease.ttl_s * 1000.0:
            raise p.ProtocolError("bad_request", f"latency_ms {msg.latency_ms:g} is more than {LATENCY_PER_TTL:g} "
                                  f"times the lease's ttl ({lease.ttl_s * 1000.0:g} ms): not a measurement of one run "
                                  "(ms, not us?); nothing was learned and the lease is still outstanding",
                                  request_id=msg.id)
        now = max(d.arrival_t, lease.granted_t)  # an arrival stamp errs early: never before the grant
        del self._leases[msg.lease_id]
        d.ended_as(msg.lease_id, "released", (now - lease.granted_t) * 1000.0)
        energy = self._energy(lease, msg)
        if msg.outcome == "failed":
            d.carry(d.machine.handle(m.Failed(now, lease.machine_key, "the application's run failed")))
            self._reply(_Releasing(lease, msg, identity, d.request_key, energy), (now - lease.arrival_t) * 1000.0,
                        ok=False)
            return
        self._releasing[lease.machine_key] = _Releasing(lease, msg, identity, d.request_key, energy)
        d.carry(d.machine.handle(m.Outcome(now, lease.machine_key, msg.latency_ms, energy)))

    def expire(self, now: float) -> None:
        """End every lease whose time is up at ``now`` (daemon clock, s): the machine frees the board."""
        for lease in [lease for lease in self._leases.values() if lease.expires_t <= now]:
            self._expire(lease, now)

    def _expire(self, lease: _Lease, now: float) -> None:
        del self._leases[lease.lease_id]
        self._d.ended_as(lease.lease_id, "expired", lease.ttl_s * 1000.0)
        log.info("lease %s expired after %.0f ms without a release", lease.lease_id, lease.ttl_s * 1000.0)
        self._d.carry(self._d.machine.handle(m.Expired(max(now, lease.expires_t), lease.machine_key)))

    def _energy(self, lease: _Lease, msg: p.ReleaseRequest) -> float | None:
        """The run's energy (mJ): the board's mean power while the lease was outstanding times the run's
        latency, from the meter the table's energy came from; else the application's own reading."""
        samples = lease.power_mw or ([self._last_power_mw] if self._last_power_mw is not None else [])
        if self._d.parts.table.energy_measured and samples:
            return min(sum(samples) / len(samples) * msg.latency_ms / 1000.0, p.MAX_ENERGY_MJ)
        return msg.energy_mj

    def record_power(self, power_mw: float | None) -> None:
        """The board's power at a tick (mW, the table's meter): outstanding leases' energy comes from it."""
        if power_mw is None or not math.isfinite(power_mw) or power_mw < 0:
            return
        self._last_power_mw = power_mw
        for lease in self._leases.values():
            lease.power_mw.append(power_mw)

    # -- the machine's actions ------------------------------------------------------------------
    def grant(self, action: m.Grant) -> None:
        """The lease's setpoints are in force: its reply hands the application the point and the k to run."""
        d = self._d
        lease = self._pending.pop(int(action.key))  # type: ignore[call-overload]
        decision = action.decision
        lease.lease_id = f"L{secrets.token_hex(12)}"  # unguessable: it names the lease to release, nothing else
        lease.decision = decision
        lease.granted_t = d.parts.clock()
        lease.expires_t = lease.granted_t + lease.ttl_s
        lease.owners = tuple(d.requests.done(lease.key, lease.identity))
        self._leases[lease.lease_id] = lease
        point = p.Point.from_operating_point(decision.point)
        d.last_point = point
        reply = p.LeaseReply(
            id=lease.request.id, lease_id=lease.lease_id, point=point,
            predicted=estimate(decision, energy_known=d.parts.table.energy_measured,
                               accuracy_known=d.parts.meta.accuracies_known),
            expires_in_ms=lease.ttl_s * 1000.0, budget_infeasible=decision.infeasible, simulated=d.parts.simulated)
        frames = p.encode_reply(reply)
        for identity in lease.owners:
            d.parts.server.send(identity, frames)
        d.requests.remember(lease.key, d.parts.clock(), frames)
        d.parts.metrics.request("acquire", "infeasible" if decision.infeasible else "met")

    def answer(self, action: m.Reply) -> bool:
        """The machine's reply to a release: the ``released`` reply. False: not a lease's."""
        releasing = self._releasing.pop(int(action.key), None)  # type: ignore[call-overload]
        if releasing is None:
            return False
        self._reply(releasing, action.total_ms or 0.0, ok=True, decision=action.decision)
        return True

    def refuse(self, action: m.Refuse) -> bool:
        """A strict lease no point meets: its acquire is answered with the error. False: not a lease's."""
        lease = self._pending.pop(int(action.key), None)  # type: ignore[call-overload]
        if lease is None:
            return False
        d = self._d
        d.parts.metrics.request("acquire", "infeasible" if action.code == "infeasible" else "rejected")
        error = p.ProtocolError(action.code, action.message, request_id=lease.request.id).to_reply()
        d.answer_all(lease.key, lease.identity, p.encode_reply(error))
        return True

    def _reply(self, r: _Releasing, total_ms: float, *, ok: bool, decision: Any = None) -> None:
        d = self._d
        decision = decision if decision is not None else r.lease.decision
        msg, budget = r.request, r.lease.request.budget
        accuracy = None if not d.parts.meta.accuracies_known or not 0 <= decision.accuracy <= 1 else \
            decision.accuracy
        measured = p.Estimate(latency_ms=msg.latency_ms, energy_mj=r.energy_mj, accuracy=accuracy)
        met_budget = ok and met(budget, total_ms, r.energy_mj, decision.accuracy)
        total = min(max(total_ms, 0.0), p.MAX_DEADLINE_MS)
        d.send(r.identity, p.ReleasedReply(id=msg.id, lease_id=msg.lease_id, measured=measured,
                                           budget_met=met_budget, total_ms=total, simulated=d.parts.simulated),
               key=r.key)
        if not ok:
            return
        d.served += 1
        point = p.Point.from_operating_point(decision.point)
        predicted = estimate(decision, energy_known=d.parts.table.energy_measured,
                             accuracy_known=d.parts.meta.accuracies_known)
        d.publish("inference", lambda seq: p.TelemetryInference(
            seq=seq, t=d.parts.clock(), simulated=d.parts.simulated, id=r.lease.request.id, budget=budget,
            point=point, predicted=predicted, measured=measured, budget_met=met_budget,
            budget_infeasible=decision.infeasible))
        d.parts.metrics.decision(decision.point, decision.latency_ms, msg.latency_ms, predicted.energy_mj,
                                 r.energy_mj)
