"""Checkout sessions on the real cashier, PostgreSQL and channel sandboxes: create (idempotent), the page's
payments (one at a time, another method after the first, never twice), completion with a signed return,
expiry by the merchant and by the deadline (the old QR refused), events once each."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from services.cashier.domain.checkout import verify_return

from .conftest import WECHAT_APPID, WECHAT_MCHID, RunningCashier, Sandboxes, approve, wait_for


def _session(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "merchant_order_no": f"ord_{uuid.uuid4().hex[:16]}",
        "amount_minor": 2_500,
        "currency": "CNY",
        "description": "Parking, 2 h",
        "return_url": "https://shop.example/return?x=1",
        "cancel_url": "https://shop.example/cart",
        "line_items": [{"name": "Parking", "quantity": 2, "amount_minor": 2_500}],
        "metadata": {"plate": "沪A12345"},
    }
    body.update(overrides)
    return body


async def _ready(start_cashier: Any, sandboxes: Sandboxes) -> RunningCashier:
    cashier: RunningCashier = await start_cashier()
    await cashier.configure("wechatpay", sandboxes.wechat_config(), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    return cashier


def _token(session: dict[str, Any]) -> str:
    return urlsplit(session["url"]).path.rsplit("/", 1)[1]


async def _pay(cashier: RunningCashier, token: str, method: str, request_id: str) -> httpx.Response:
    return await cashier.client.post(
        f"/v1/checkout/pages/{token}/payments", json={"method": method, "scene": "native_qr", "request_id": request_id}
    )


async def test_a_session_is_paid_once_after_a_change_of_method(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    cashier = await _ready(start_cashier, sandboxes)
    body = _session()
    created = await cashier.post("/v1/checkout/sessions", body)
    assert created.status_code == 201, created.text
    session = created.json()
    token = _token(session)
    assert session["status"] == "open" and session["id"] not in token and len(token) >= 40
    again = await cashier.post("/v1/checkout/sessions", body)
    assert again.status_code == 200 and again.json()["url"] == session["url"]
    other = await cashier.post("/v1/checkout/sessions", {**body, "amount_minor": 9, "line_items": []})
    assert other.status_code == 409 and other.json()["code"] == "duplicate_merchant_order"
    assert (await cashier.post("/v1/checkout/sessions", _session(expires_in_seconds=10))).json()[
        "code"
    ] == "checkout_expiry_out_of_range"
    bad_sum = await cashier.post("/v1/checkout/sessions", _session(amount_minor=100))
    assert bad_sum.status_code == 422
    named = await cashier.post("/v1/checkout/sessions", _session(merchant_name="Another Shop"))
    assert named.status_code == 422 and named.json()["code"] == "validation_failed"  # the name is the registry's

    page = (await cashier.client.get(f"/v1/checkout/pages/{token}", params={"scene": "native_qr"})).json()
    # Run without a gateway, the registry's name is the merchant id (through the gateway: test_checkout_names).
    assert page["methods"] == ["wechatpay", "alipay"] and page["merchant_name"] == cashier.merchant_id
    assert page["payment"] is None and page["amount_minor"] == 2_500
    assert page["frame_origins"] == []  # no merchant page may frame the checkout until the platform says so
    origins_path = f"/v1/admin/merchants/{cashier.merchant_id}/checkout-origins"
    bad_origin = await cashier.client.put(origins_path, json={"origins": ["http://shop.example"]})
    assert bad_origin.status_code == 422 and bad_origin.json()["code"] == "validation_failed"  # https only
    registered = await cashier.client.put(
        origins_path, json={"origins": ["https://Shop.example/", "https://shop.example"]}
    )
    assert registered.status_code == 200 and registered.json()["origins"] == ["https://shop.example"]
    page = (await cashier.client.get(f"/v1/checkout/pages/{token}")).json()
    assert page["frame_origins"] == ["https://shop.example"]
    assert (await cashier.client.get("/v1/checkout/pages/cst_" + "x" * 43)).status_code == 404

    first = await _pay(cashier, token, "wechatpay", "req-aaaaaaaa")
    assert first.status_code == 200, first.text
    wechat = first.json()["payment"]
    assert wechat["payer_action"]["qr_code"].startswith("weixin://")
    same = (await _pay(cashier, token, "wechatpay", "req-bbbbbbbb")).json()["payment"]
    assert same["id"] == wechat["id"]  # a reload shows the same QR, no second order
    switched = await _pay(cashier, token, "alipay", "req-cccccccc")
    assert switched.status_code == 200, switched.text
    alipay = switched.json()["payment"]
    assert alipay["id"] != wechat["id"] and alipay["payer_action"]["qr_code"]
    assert (await cashier.payment(wechat["id"]))["status"] == "closed"  # never two live payments
    old = (await cashier.payment(wechat["id"]))["attempts"][0]["out_trade_no"]
    async with httpx.AsyncClient() as client:  # the closed WeChat QR cannot be paid any more
        refused = await client.post(
            f"{sandboxes.wechat.base_url}/control/orders/{old}/approve", params={"mchid": WECHAT_MCHID}
        )
    assert refused.status_code >= 400

    await approve(sandboxes, "alipay", (await cashier.payment(alipay["id"]))["attempts"][0]["out_trade_no"])

    async def completed() -> dict[str, Any] | None:
        view = (await cashier.client.get(f"/v1/checkout/pages/{token}")).json()
        return view if view["status"] == "completed" else None

    done = await wait_for(completed, "the session to complete")
    returned = urlsplit(done["return_url"])
    assert returned.netloc == "shop.example" and returned.path == "/return"
    params = dict(parse_qsl(returned.query))
    assert params["x"] == "1" and params["status"] == "completed" and params["payment_id"] == alipay["id"]
    signed = {k: v for k, v in params.items() if k != "x"}
    assert verify_return(cashier.webhook_secret, signed, now=int(time.time()))
    assert not verify_return(cashier.webhook_secret, {**signed, "amount_minor": "1"}, now=int(time.time()))
    merchant_view = (await cashier.get(f"/v1/checkout/sessions/{session['id']}")).json()
    assert merchant_view["status"] == "completed" and merchant_view["payment_id"] == alipay["id"]
    assert merchant_view["payments_started"] == 2

    late = await _pay(cashier, token, "wechatpay", "req-dddddddd")
    assert late.status_code == 409 and late.json()["code"] == "checkout_session_not_open"  # never paid twice
    expired = await cashier.post(f"/v1/checkout/sessions/{session['id']}/expire")
    assert expired.status_code == 409
    assert await cashier.outbox_count("checkout.session.completed", session["id"]) == 1
    assert await cashier.outbox_count("checkout.session.expired", session["id"]) == 0
    payment = await cashier.payment(alipay["id"])
    assert payment["metadata"]["checkout_session_id"] == session["id"]
    assert payment["metadata"]["plate"] == "沪A12345"


async def test_expiry_closes_the_live_qr(start_cashier: Any, sandboxes: Sandboxes, clean_faults: None) -> None:
    cashier = await _ready(start_cashier, sandboxes)
    # 1. the merchant expires it
    session = (await cashier.post("/v1/checkout/sessions", _session())).json()
    token = _token(session)
    payment = (await _pay(cashier, token, "wechatpay", "req-eeeeeeee")).json()["payment"]
    expired = await cashier.post(f"/v1/checkout/sessions/{session['id']}/expire")
    assert expired.status_code == 200 and expired.json()["status"] == "expired"
    assert (await cashier.payment(payment["id"]))["status"] == "closed"
    refused = await _pay(cashier, token, "alipay", "req-ffffffff")
    assert refused.status_code == 409 and refused.json()["code"] == "checkout_session_not_open"
    assert await cashier.outbox_count("checkout.session.expired", session["id"]) == 1

    # 2. the deadline passes: the worker's loop expires it and closes the QR
    later = (await cashier.post("/v1/checkout/sessions", _session())).json()
    live = (await _pay(cashier, _token(later), "wechatpay", "req-gggggggg")).json()["payment"]
    real_clock = cashier.cashier.clock
    cashier.cashier.clock = lambda: real_clock() + timedelta(minutes=16)
    try:

        async def is_expired() -> bool:
            async with cashier.engine.connect():
                return await cashier.outbox_count("checkout.session.expired", later["id"]) == 1

        await wait_for(is_expired, "the loop to expire the session")
    finally:
        cashier.cashier.clock = real_clock
    assert (await cashier.payment(live["id"]))["status"] == "closed"
    page = (await cashier.client.get(f"/v1/checkout/pages/{_token(later)}")).json()
    assert page["status"] == "expired" and page["payment"]["payer_action"] is None


async def test_inside_the_app_the_cashier_redeems_the_code_for_the_page_its_state_was_signed_for(
    start_cashier: Any, sandboxes: Sandboxes, clean_faults: None
) -> None:
    """JSAPI (docs/checkout.md): the jsapi view answers each wallet's authorize URL with a state bound to the page
    and channel; the cashier redeems the code (never a page's openid) and creates the JSAPI payment; another
    channel's state is refused, the same state again answers the same payment, a bad code closes nothing; the app's
    bridge (the sandbox) pays with the signed parameters and the session completes. A named-payer payment needs a
    user identity."""
    cashier: RunningCashier = await start_cashier()
    secret = sandboxes.wechat_merchant["app_secrets"][WECHAT_APPID]
    await cashier.configure("wechatpay", sandboxes.wechat_config(app_secret=secret), priority=1)
    await cashier.configure("alipay", sandboxes.alipay_config(), priority=2)
    token = _token((await cashier.post("/v1/checkout/sessions", _session())).json())
    view = (await cashier.client.get(f"/v1/checkout/pages/{token}", params={"scene": "jsapi"})).json()
    assert view["methods"] == ["wechatpay", "alipay"] and set(view["oauth"]) == {"wechatpay", "alipay"}
    authorize = view["oauth"]["wechatpay"]
    assert authorize.startswith(f"{sandboxes.wechat.base_url}/connect/oauth2/authorize?appid={WECHAT_APPID}&")
    query = dict(parse_qsl(urlsplit(authorize.split("#")[0]).query))
    assert query["redirect_uri"].endswith(f"/checkout/{token}/oauth/wechatpay") and authorize.endswith(
        "#wechat_redirect"
    )
    alipay_state = dict(parse_qsl(urlsplit(view["oauth"]["alipay"]).query))["state"]
    async with httpx.AsyncClient() as client:
        back = await client.get(authorize.split("#")[0])
    code = dict(parse_qsl(urlsplit(back.headers["location"]).query))["code"]

    async def pay(method: str, payer: dict[str, str]) -> httpx.Response:
        body = {"method": method, "scene": "jsapi", "request_id": uuid.uuid4().hex, "payer": payer}
        return await cashier.client.post(f"/v1/checkout/pages/{token}/payments", json=body)

    wrong = await pay("wechatpay", {"oauth_code": code, "oauth_state": alipay_state})
    assert wrong.status_code == 422 and wrong.json()["code"] == "checkout_oauth_state_invalid"
    started = await pay(
        "wechatpay", {"openid": "o_named_by_the_page", "oauth_code": code, "oauth_state": query["state"]}
    )
    assert started.status_code == 200, started.text
    payment = started.json()["payment"]
    params = payment["payer_action"]["jsapi_params"]
    assert payment["payer_action"]["type"] == "jsapi" and params["package"].startswith("prepay_id=")
    out_trade_no = (await cashier.payment(payment["id"]))["attempts"][0]["out_trade_no"]
    async with httpx.AsyncClient(base_url=sandboxes.wechat.base_url) as wechat:
        again = await pay("wechatpay", {"oauth_code": code, "oauth_state": query["state"]})
        assert again.status_code == 200 and again.json()["payment"]["id"] == payment["id"]  # a reload: same payment
        bogus = await pay("alipay", {"oauth_code": "not-a-code", "oauth_state": alipay_state})
        assert bogus.status_code == 422 and bogus.json()["code"] == "checkout_oauth_code_invalid"
        assert (await cashier.payment(payment["id"]))["status"] in ("created", "processing")  # nothing closed
        unnamed = {"method": "wechatpay", "scene": "native_qr", "request_id": "req-named-1"}
        named = await cashier.post(f"/v1/checkout/user-payments/{token}", unnamed)  # as the merchant
        assert named.status_code == 403 and named.json()["code"] == "payer_mismatch"  # only a signed-in user
        paid = (await wechat.post("/control/app-bridge/wechat/pay", json=params)).json()
        assert paid == {"err_msg": "get_brand_wcpay_request:ok"}
        order = (await wechat.get(f"/control/orders/{out_trade_no}", params={"mchid": WECHAT_MCHID})).json()["order"]
        assert order["payer"]["openid"] != "o_named_by_the_page"  # the channel's openid for the code, not the page's

    async def completed() -> dict[str, Any] | None:
        current = (await cashier.client.get(f"/v1/checkout/pages/{token}")).json()
        return current if current["status"] == "completed" else None

    await wait_for(completed, "the session paid by JSAPI to complete")
