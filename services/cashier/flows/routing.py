"""Which channels to try, in order: the routing service's decision, or the merchant's own order.

Routing decides per payment *method* (`wechat`, `alipay`, …): the cashier walks the merchant's
eligible channels in its configured order (or the request's `preferred_channels`), and for each
method asks `POST {JUHE_CASHIER_ROUTING_URL}/v1/route` for that method's ordered candidates (route
id, connector, fee in force), keeping those whose connector the merchant has credentials for. So
within a method routing picks the route; across methods the payment still fails over (WeChat dark →
Alipay).

All of a payment's methods are asked in one call (`POST /v1/route/methods`, one decision per method on one
snapshot of routing's state), each answered as `POST /v1/route` would answer it alone.

The call itself is `clients/routing.py` (`RoutingClient`). Fallback: when no routing URL is set, or routing is
unreachable / answers 5xx / 404 / a validation error, that method's channels are tried in the merchant's own
order, so a routing outage never stops payments. A 422 `no_route_available` or 503 `channel_unavailable` from
routing is a policy answer and is respected (that method contributes no candidate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.cashier.clients.routing import Candidate, RoutingClient

# The routing service's payment method for each connector the cashier has.
METHOD_OF_CHANNEL: dict[str, str] = {
    "wechatpay": "wechat",
    "alipay": "alipay",
    "unionpay": "unionpay",
    "ecny": "ecny",
    "wallet": "wallet",
}
PAYER_CLIENTS = frozenset({"wechat", "alipay", "other"})


async def route_candidates(
    client: RoutingClient, *, channels: Sequence[str], context: dict[str, Any]
) -> list[Candidate]:
    """Candidates over all eligible channels (already in the merchant's order), routed per method."""
    methods = list(dict.fromkeys(m for c in channels if (m := METHOD_OF_CHANNEL.get(c)) is not None))
    answers = await client.decide_methods(context, methods)
    result: list[Candidate] = []
    seen: set[tuple[str, str | None]] = set()
    done_methods: set[str] = set()
    for channel in channels:
        method = METHOD_OF_CHANNEL.get(channel)
        if method is not None and method in done_methods:
            continue
        routed: list[Candidate] | None = None
        if method is not None:
            done_methods.add(method)
            routed = answers.get(method)
        if routed is None:
            same_method = [c for c in channels if METHOD_OF_CHANNEL.get(c) == method] if method else [channel]
            routed = [Candidate(channel=c) for c in same_method]
        for candidate in routed:
            key = (candidate.channel, candidate.route_id)
            if candidate.channel in channels and key not in seen:
                seen.add(key)
                result.append(candidate)
    return result
