"""Consumer of `cashier.payments`: attempt outcomes feed the shared health state.

Expected event data (tolerant reader; see README): `route_id` (required, else the event is ignored),
`outcome` (`succeeded` | `declined` | `error` | `timeout`; defaults from the event type:
`payment.succeeded` → succeeded, the others → error), `latency_ms`, `amount_minor`, `attempt_id`
(de-duplicates an attempt reported by two events), `occurred_at` (defaults to the envelope time).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from libs.common.db import Tx
from libs.common.events import Envelope
from libs.common.inbox import batched
from libs.common.logging import get_logger
from services.routing.domain.health import Outcome
from services.routing.events.types import PAYMENT_SUCCEEDED
from services.routing.store.health import AttemptOutcome, record_outcomes, settings_in
from services.routing.store.special_rates import record_payment_fees

log = get_logger("juhe.routing.consumer")

# Words other services might use for the same outcome: accepted, mapped onto ours.
_OUTCOME_SYNONYMS = {
    "success": Outcome.SUCCEEDED,
    "succeeded": Outcome.SUCCEEDED,
    "declined": Outcome.DECLINED,
    "refused": Outcome.DECLINED,
    "error": Outcome.ERROR,
    "failed": Outcome.ERROR,
    "unavailable": Outcome.ERROR,
    "timeout": Outcome.TIMEOUT,
    "timed_out": Outcome.TIMEOUT,
}
LATENCY_MS_MAX = 10 * 60 * 1000


def _int_or_none(value: Any, *, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_outcome(event: Envelope) -> AttemptOutcome | None:
    data = event.data
    nested = data.get("attempt")
    attempt: dict[str, Any] = nested if isinstance(nested, dict) else {}
    route_id = data.get("route_id") or attempt.get("route_id")
    if not isinstance(route_id, str) or not route_id:
        return None
    raw_outcome = data.get("outcome") or attempt.get("outcome")
    default = Outcome.SUCCEEDED if event.type == PAYMENT_SUCCEEDED else Outcome.ERROR
    outcome = _OUTCOME_SYNONYMS.get(str(raw_outcome).lower(), default) if raw_outcome else default
    attempt_id = data.get("attempt_id") or attempt.get("attempt_id") or attempt.get("id")
    return AttemptOutcome(
        route_id=route_id,
        outcome=outcome,
        occurred_at=_time(data.get("occurred_at")) or _time(event.time) or datetime.now(UTC),
        latency_ms=_int_or_none(data.get("latency_ms", attempt.get("latency_ms")), low=0, high=LATENCY_MS_MAX),
        amount_minor=_int_or_none(data.get("amount_minor"), low=1, high=2**63 - 1),
        attempt_id=attempt_id if isinstance(attempt_id, str) and attempt_id else None,
    )


def parse_payment_fee(event: Envelope) -> dict[str, Any] | None:
    """A `payment.succeeded` with what the savings projection needs (domain/special_rates.py): the payment,
    its merchant, route, amount and the fee the route quoted. None when any is missing (a payment routed
    without a quote has no fee to compare)."""
    data = event.data
    if event.type != PAYMENT_SUCCEEDED:
        return None
    fields = {name: data.get(name) for name in ("payment_id", "merchant_id", "route_id", "currency")}
    if not all(isinstance(v, str) and v for v in fields.values()):
        return None
    amount = _int_or_none(data.get("amount_minor"), low=0, high=2**63 - 1)
    fee = _int_or_none(data.get("fee_minor"), low=0, high=2**63 - 1)
    if amount is None or fee is None:
        return None
    at = _time(data.get("succeeded_at")) or _time(event.time) or datetime.now(UTC)
    return {**fields, "amount_minor": amount, "fee_minor": fee, "succeeded_at": at}


async def on_payment_outcomes(tx: Tx, events: Sequence[Envelope]) -> None:
    """A run of payment events (the inbox's batch, libs/common/inbox.py): the fees of the succeeded ones in one
    statement, then every outcome counted in three (store/health.py), the settings read once per transaction."""
    fees = [fee for fee in map(parse_payment_fee, events) if fee is not None]
    if fees:
        await record_payment_fees(tx.conn, fees)
    outcomes = []
    for event in events:
        outcome = parse_outcome(event)
        if outcome is None:
            log.info("payment event without route_id ignored", event_id=event.id, type=event.type)
        else:
            outcomes.append(outcome)
    if not outcomes:
        return
    settings = await settings_in(tx)  # read once per consumed batch
    for route_id, t in await record_outcomes(tx, outcomes, now=datetime.now(UTC), settings=settings):
        log.warning("route circuit changed", route_id=route_id, to_state=t.to_state.value, reason=t.reason)


on_payment_outcome = batched(on_payment_outcomes)
