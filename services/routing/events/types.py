"""Events the routing service publishes on `routing.channels` (keyed by route_id).

- `route.created`: a channel route is added. data: `route` (full definition), `actor`.
- `route.updated`: a route's definition changes (enabled flag, limits, hours…).
  data: `route`, `changed_fields`, `actor`.
- `route.circuit_opened` / `route.circuit_half_opened` / `route.circuit_closed`: the breaker changed.
  data: `route_id`, `from_state`, `to_state`, `at`, `reason`.
- `fee_rate.created` / `fee_rate.expired`: a rate was added / given an end date. data: `fee_rate`, `actor`.
"""

from __future__ import annotations

from services.routing.domain.health import CircuitState

TOPIC = "routing.channels"

ROUTE_CREATED = "route.created"
ROUTE_UPDATED = "route.updated"
ROUTE_CIRCUIT_OPENED = "route.circuit_opened"
ROUTE_CIRCUIT_HALF_OPENED = "route.circuit_half_opened"
ROUTE_CIRCUIT_CLOSED = "route.circuit_closed"
FEE_RATE_CREATED = "fee_rate.created"
FEE_RATE_EXPIRED = "fee_rate.expired"

CIRCUIT_EVENT_TYPES: dict[CircuitState, str] = {
    CircuitState.OPEN: ROUTE_CIRCUIT_OPENED,
    CircuitState.HALF_OPEN: ROUTE_CIRCUIT_HALF_OPENED,
    CircuitState.CLOSED: ROUTE_CIRCUIT_CLOSED,
}

# What the routing service consumes: attempt outcomes from the cashier.
CASHIER_PAYMENTS_TOPIC = "cashier.payments"
PAYMENT_ATTEMPT_FAILED = "payment.attempt_failed"
PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
OUTCOME_EVENT_TYPES = frozenset({PAYMENT_ATTEMPT_FAILED, PAYMENT_SUCCEEDED, PAYMENT_FAILED})
