"""`JsonFastRoute` (libs/common/web.py): a valid JSON body is answered without FastAPI's per-request machinery with
the bytes FastAPI's route answers; everything it declines (a body that does not validate, not JSON, another content
type) is FastAPI's route's own answer; the route keeps its OpenAPI entry and its metric series."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from libs.common import web


class Order(BaseModel):
    order_id: str = Field(min_length=1)
    amount_minor: int = Field(ge=1)
    methods: list[str] = Field(min_length=1)


class Quote(BaseModel):
    order_id: str
    fee_minor: int
    methods: list[str]
    note: str | None = None


def quote_of(order: Order) -> Quote:
    return Quote(order_id=order.order_id, fee_minor=order.amount_minor * 6 // 1000, methods=order.methods)


served_by: list[str] = []


def make_app(*, fast: bool) -> FastAPI:
    app = FastAPI(redirect_slashes=False, telemetry=web.NATIVE_TELEMETRY_OFF)
    web.install_problem_handlers(app)
    app.add_middleware(web.UnstorableTextGuard)
    web.install_observability(app, f"fast-route-test-{fast}")
    router = APIRouter(prefix="/v1/quotes")

    @router.post("/for-order")
    async def quote(body: Order) -> Quote:
        served_by.append("fastapi")
        return quote_of(body)

    app.include_router(router)
    app.state.runtime = SimpleNamespace(name="runtime")

    async def answer(runtime: Any, body: Order) -> Quote:
        assert runtime is app.state.runtime
        served_by.append("fast")
        return quote_of(body)

    if fast:
        app.router.routes.insert(0, web.JsonFastRoute("/v1/quotes/for-order", Order, answer))
    return app


async def post(app: FastAPI, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test") as client:
        return await client.post("/v1/quotes/for-order", **kwargs)


async def test_a_valid_body_is_answered_fast_with_fastapis_bytes_and_the_rest_by_fastapi() -> None:
    plain, fast = make_app(fast=False), make_app(fast=True)
    cases: list[dict[str, Any]] = [
        {"json": {"order_id": "o1", "amount_minor": 12_345, "methods": ["alipay", "wechat"]}},  # valid
        {"json": {"order_id": "", "amount_minor": 0, "methods": []}},  # three fields invalid
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
        {"content": b"order_id=o1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        {"content": b""},
    ]
    for case in cases:
        served_by.clear()
        expected = await post(plain, **case)
        got = await post(fast, **case)
        assert (got.status_code, got.content) == (expected.status_code, expected.content), case
        assert got.headers["content-type"] == expected.headers["content-type"], case
        assert "x-trace-id" in got.headers
        # Only a valid body reaches an endpoint: the fast one, or FastAPI's without the fast route.
        assert served_by == (["fastapi", "fast"] if case is cases[0] else []), case
    assert (await post(fast, **cases[0])).json()["fee_minor"] == 74
    assert "/v1/quotes/for-order" in fast.openapi()["paths"]
    # The requests are counted under the same route label either way.
    assert series_of("fast-route-test-True") == series_of("fast-route-test-False")


def series_of(service: str) -> set[tuple[str, str, str]]:
    return {
        (sample.labels["method"], sample.labels["route"], sample.labels["status"])
        for metric in web.http_requests_total.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("service") == service
    }


async def test_a_method_other_than_post_is_fastapis_answer() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(fast=True)), base_url="http://t") as c:
        wrong = await c.get("/v1/quotes/for-order")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
