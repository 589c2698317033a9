"""The cashier's routing client during an upgrade: a routing without `POST /v1/route/methods` (404) is asked once
per method through `POST /v1/route`, with the same answers as the one-call path (docs/performance.md).

The older routing is a stand-in on purpose: every routing running here has the endpoint."""

from __future__ import annotations

import json

import httpx

from services.cashier.clients.routing import Candidate, RoutingClient

ROUTES = {  # what an older routing answers per method
    "wechatpay": (200, {"candidates": [{"route_id": "wx_sp", "connector": "wechatpay", "fee": {"fee_minor": 6}}]}),
    "alipay": (422, {"code": "no_route_available"}),
    "unionpay": (500, {"code": "internal"}),
}


def older_routing(asked: list[str]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/route/methods":
            return httpx.Response(404, json={"code": "not_found"})
        method = json.loads(request.content)["method"]
        asked.append(method)
        status, body = ROUTES[method]
        return httpx.Response(status, json=body)

    return httpx.MockTransport(answer)


async def test_a_routing_without_the_methods_endpoint_is_asked_once_per_method() -> None:
    asked: list[str] = []
    client = RoutingClient("", timeout_seconds=5)
    client._http = httpx.AsyncClient(base_url="http://routing", transport=older_routing(asked))
    try:
        answers = await client.decide_methods({"merchant_id": "mch_1", "amount_minor": 100}, list(ROUTES))
    finally:
        await client.aclose()
    assert asked == list(ROUTES)  # one request per method, in order
    assert answers == {
        "wechatpay": [Candidate(channel="wechatpay", route_id="wx_sp", fee_minor=6, source="routing")],
        "alipay": [],  # routing's policy answer: no route for this method
        "unionpay": None,  # an error: the caller falls back to the merchant's channel order
    }
