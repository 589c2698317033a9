"""Merchant webhook endpoints: which event types exist, which an endpoint receives, and the rotation window.

An endpoint subscribes to event types by name, or to all with `*` (which also covers types added later).
Every final payment/refund state change is one event; it goes to every enabled endpoint whose types match,
one delivery each, and is kept in the merchant's event log (`GET /v1/events`) whether or not it was sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.cashier.events import PAYMENT_CLOSED, PAYMENT_FAILED, PAYMENT_SUCCEEDED, REFUND_FAILED, REFUND_SUCCEEDED

WILDCARD = "*"
# The events a merchant can receive, in the order the docs list them.
EVENT_TYPES: tuple[str, ...] = (PAYMENT_SUCCEEDED, PAYMENT_FAILED, PAYMENT_CLOSED, REFUND_SUCCEEDED, REFUND_FAILED)

ENDPOINTS_PER_MERCHANT_MAX = 16  # like Stripe's limit: enough for every environment, bounded fan-out per event
DESCRIPTION_MAX_CHARS = 500
# How long the previous secret keeps signing after a rotation: receivers need time to deploy the new one.
ROTATION_OVERLAP_DEFAULT_SECONDS = 86_400
ROTATION_OVERLAP_MAX_SECONDS = 7 * 86_400


def enabled_events_problem(enabled_events: Sequence[str]) -> str | None:
    """Why a list of event types cannot be subscribed to; None if it can."""
    if not enabled_events:
        return "enabled_events must name at least one event type (or '*')"
    unknown = sorted({t for t in enabled_events if t != WILDCARD and t not in EVENT_TYPES})
    if unknown:
        return f"unknown event types {unknown}; known: {list(EVENT_TYPES)} or '*'"
    if len(set(enabled_events)) != len(enabled_events):
        return "enabled_events lists a type twice"
    return None


def normalized_events(enabled_events: Sequence[str]) -> list[str]:
    """`*` alone when it is listed (it already covers the rest); otherwise the types in catalogue order."""
    if WILDCARD in enabled_events:
        return [WILDCARD]
    return [t for t in EVENT_TYPES if t in enabled_events]


def subscribes_to(enabled_events: Sequence[str], event_type: str) -> bool:
    return WILDCARD in enabled_events or event_type in enabled_events
