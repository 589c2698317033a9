"""The routing simulator: what would this payment do, and why — for operators, with no side effects.

The same `decide` the cashier's `POST /v1/route` runs, on the same snapshot (configuration, contracts,
circuits, success-rate windows, today's volume), once per payment method the payer might choose, in the
order of preference given. It reads only: no decision, health sample, audit row or event is written, so a
simulation never shifts a split or a probe. Kept routes carry their fee quote and, when the quoting rate
comes from an approved special-rate application, which one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from libs.common.db import UnitOfWork
from libs.common.errors import Problem
from services.routing.domain.decide import Candidate, Decision, Skipped, SkipReason, decide
from services.routing.domain.model import Method, PayerClient, PaymentContext, Scene
from services.routing.store import special_rates as special_store
from services.routing.store.snapshot import SnapshotSource

ROUTED = "routed"
# Approved applications of one merchant read to label special rates (a merchant has a handful).
APPLICATIONS_READ_MAX = 200


@dataclass(frozen=True, slots=True)
class SpecialRate:
    application_id: str
    programme_id: str


@dataclass(frozen=True, slots=True)
class MethodSimulation:
    method: Method
    outcome: str  # routed | no_route_available | channel_unavailable
    decision: Decision

    @property
    def dropped(self) -> list[Skipped]:
        """Routes of this method that were dropped (routes of other methods are not this method's business)."""
        return [s for s in self.decision.skipped if s.reason is not SkipReason.METHOD_MISMATCH]


@dataclass(frozen=True, slots=True)
class Simulation:
    merchant_id: str
    simulated_at: datetime
    at: datetime
    methods: tuple[MethodSimulation, ...]
    special_rates: dict[str, SpecialRate]

    @property
    def chosen(self) -> tuple[Method, Candidate] | None:
        """The first candidate of the first preferred method that routes: where the payment would go."""
        for m in self.methods:
            if m.decision.candidates:
                return m.method, m.decision.candidates[0]
        return None

    @property
    def outcome(self) -> str:
        outcomes = {m.outcome for m in self.methods}
        for outcome in (ROUTED, "channel_unavailable"):
            if outcome in outcomes:
                return outcome
        return "no_route_available"


async def simulate(
    uow: UnitOfWork,
    source: SnapshotSource,
    *,
    merchant_id: str,
    amount_minor: int,
    currency: str,
    methods: list[Method],
    scene: Scene,
    payer_client: PayerClient,
    industry: str | None,
    payment_id: str,
    at: datetime | None,
) -> Simulation:
    now = datetime.now(UTC)
    snapshot = await source.snapshot(merchant_id, now)
    results: list[MethodSimulation] = []
    for method in methods:
        context = PaymentContext(
            payment_id=payment_id,
            merchant_id=merchant_id,
            amount_minor=amount_minor,
            currency=currency,
            method=method,
            scene=scene,
            payer_client=payer_client,
            industry=industry,
        )
        decision = decide(context, snapshot, at or now)
        try:
            decision.require_candidates()
            outcome = ROUTED
        except Problem as problem:
            outcome = problem.spec.code
        results.append(MethodSimulation(method, outcome, decision))
    async with uow.read() as conn:
        approved = await special_store.list_applications(
            conn, merchant_id=merchant_id, status="approved", after=None, limit=APPLICATIONS_READ_MAX
        )
    special = {rate_id: SpecialRate(a.application_id, a.programme_id) for a in approved for rate_id in a.rate_ids}
    return Simulation(merchant_id, now, at or now, tuple(results), special)
