"""The cashier's routing client during an upgrade: a routing without `POST /v1/route/methods` (404) is asked once
per method through `POST /v1/route`, with the same answers as the one-call path (docs/performance.md); and a routing
that cannot be reached is a fallback, not a failure (the lean call raises httpx's exceptions, ADR 0003).

The older routing is a stand-in on purpose (a real HTTP server answering as it did): every routing running here has
the endpoint."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from libs.common.testing.infra import serve_app
from services.cashier.clients.routing import Candidate, RoutingClient

ROUTES = {  # what an older routing answers per method
    "wechatpay": (200, {"candidates": [{"route_id": "wx_sp", "connector": "wechatpay", "fee": {"fee_minor": 6}}]}),
    "alipay": (422, {"code": "no_route_available"}),
    "unionpay": (500, {"code": "internal"}),
}


def older_routing(asked: list[str]) -> Starlette:
    async def methods(request: Request) -> JSONResponse:
        return JSONResponse({"code": "not_found"}, status_code=404)

    async def route(request: Request) -> JSONResponse:
        method = json.loads(await request.body())["method"]
        asked.append(method)
        status, body = ROUTES[method]
        return JSONResponse(body, status_code=status)

    return Starlette(
        routes=[Route("/v1/route/methods", methods, methods=["POST"]), Route("/v1/route", route, methods=["POST"])]
    )


async def test_a_routing_without_the_methods_endpoint_is_asked_once_per_method() -> None:
    asked: list[str] = []
    async with serve_app(older_routing(asked)) as url:
        client = RoutingClient(url, timeout_seconds=5)
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


async def test_an_unreachable_routing_is_a_fallback() -> None:
    client = RoutingClient("http://127.0.0.1:9", timeout_seconds=5)
    try:
        assert await client.decide_methods({"merchant_id": "mch_1"}, ["alipay"]) == {}
        assert await client.decide({"merchant_id": "mch_1", "method": "alipay"}) is None
    finally:
        await client.aclose()
