"""My Wallet at the gateway over real HTTP and the real database: one-time sign-in links redeemed only by the
web process, payment PINs (argon2id, 5 wrong tries lock, concurrent tries counted exactly), and the pages'
prefixes forwarded to the web process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.config import DEMO_WEB_CLIENT_TOKEN
from gateway.tests.integration.conftest import Stack, StackFactory
from gateway.tests.integration.servers import ThreadServer

WEB = {"Authorization": f"Bearer {DEMO_WEB_CLIENT_TOKEN}"}


async def _link(stack: Stack, raw: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {stack.keys['admin_key']}"}
    r = await raw.post(f"/v1/platform/users/{user_id}/wallet-sign-in-links", headers=admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _session(stack: Stack, raw: httpx.AsyncClient) -> dict[str, str]:
    link = await _link(stack, raw, stack.keys["user_id"])
    token = link["url"].split("token=", 1)[1]
    r = await raw.post("/v1/web/wallet-sessions", json={"token": token}, headers=WEB)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_a_sign_in_link_works_once_only_for_the_web_process(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(public_base_url="https://pay.example.com")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
        link = await _link(stack, raw, stack.keys["user_id"])
        assert link["url"].startswith("https://pay.example.com/wallet/sign-in?token=wsl_")
        token = link["url"].split("token=", 1)[1]
        assert len(token.split(".", 1)[1]) >= 43  # 256 random bits, url-safe base64
        for headers in (
            {},
            {"Authorization": "Bearer not-the-web"},
            {"Authorization": f"Bearer {stack.keys['admin_key']}"},
        ):
            r = await raw.post("/v1/web/wallet-sessions", json={"token": token}, headers=headers)
            assert (r.status_code, r.json()["code"]) == (401, "web_client_invalid"), r.text
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        r = await raw.post("/v1/web/wallet-sessions", json={"token": tampered}, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (401, "sign_in_link_invalid")
        r = await raw.post("/v1/web/wallet-sessions", json={"token": token}, headers=WEB)
        assert r.status_code == 201, r.text
        session = r.json()
        assert session["user_id"] == stack.keys["user_id"] and session["token"].startswith("utk_")
        again = await raw.post("/v1/web/wallet-sessions", json={"token": token}, headers=WEB)
        assert (again.status_code, again.json()["code"]) == (401, "sign_in_link_invalid")
        # The session is a user token: it reaches the user's own endpoints, and signing out ends it at once.
        user = {"Authorization": f"Bearer {session['token']}"}
        assert (await raw.get("/v1/me/payment-pin", headers=user)).status_code == 200
        assert (await raw.post("/v1/me/sign-out", headers=user)).status_code == 204
        assert (await raw.get("/v1/me/payment-pin", headers=user)).json()["code"] == "token_invalid"
        r = await raw.post(
            "/v1/platform/users/usr_nobody/wallet-sign-in-links",
            headers={"Authorization": f"Bearer {stack.keys['admin_key']}"},
        )
        assert (r.status_code, r.json()["code"]) == (404, "user_not_found")


async def test_an_expired_link_is_refused(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
        link = await _link(stack, raw, stack.keys["user_id"])
        engine = create_async_engine(stack.database_url)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE wallet_sign_in_links SET expires_at = now() - interval '1 second'"))
        await engine.dispose()
        r = await raw.post("/v1/web/wallet-sessions", json={"token": link["url"].split("token=")[1]}, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (401, "sign_in_link_invalid")


async def test_payment_pin_set_change_and_lockout(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
        user = await _session(stack, raw)
        assert (await raw.get("/v1/me/payment-pin", headers=user)).json() == {
            "set": False,
            "locked": False,
            "tries_left": 5,
            "locked_until": None,
        }
        r = await raw.post("/v1/me/payment-pin/verifications", json={"pin": "135790"}, headers=user)
        assert (r.status_code, r.json()["code"]) == (409, "payment_pin_not_set")
        for bad in ("12345", "abcdef", "1234567"):
            r = await raw.put("/v1/me/payment-pin", json={"pin": bad}, headers=user)
            assert (r.status_code, r.json()["code"]) == (422, "validation_failed"), bad
        for simple in ("111111", "123456", "987654"):
            r = await raw.put("/v1/me/payment-pin", json={"pin": simple}, headers=user)
            assert (r.status_code, r.json()["code"]) == (422, "payment_pin_too_simple"), simple
        assert (await raw.put("/v1/me/payment-pin", json={"pin": "135790"}, headers=user)).json()["set"] is True
        r = await raw.put("/v1/me/payment-pin", json={"pin": "246802"}, headers=user)
        assert (r.status_code, r.json()["code"]) == (409, "payment_pin_already_set")
        engine = create_async_engine(stack.database_url)
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT pin_hash FROM payment_pins"))).scalar_one()
        await engine.dispose()
        assert stored.startswith("$argon2id$") and "135790" not in stored
        # Change: a wrong current PIN is a wrong try; the right one changes it and resets the count.
        r = await raw.put("/v1/me/payment-pin", json={"pin": "246802", "current_pin": "000001"}, headers=user)
        assert (r.status_code, r.json()["code"], r.json()["tries_left"]) == (403, "payment_pin_incorrect", 4)
        r = await raw.put("/v1/me/payment-pin", json={"pin": "246802", "current_pin": "135790"}, headers=user)
        assert r.status_code == 200 and r.json()["tries_left"] == 5, r.text
        ok = await raw.post("/v1/me/payment-pin/verifications", json={"pin": "246802"}, headers=user)
        assert ok.json() == {"verified": True}
        # Five wrong tries at once: counted one at a time under the row lock, exactly four 403s and one 423.
        tries = await asyncio.gather(
            *(raw.post("/v1/me/payment-pin/verifications", json={"pin": f"00000{i}"}, headers=user) for i in range(5))
        )
        assert sorted(r.status_code for r in tries) == [403, 403, 403, 403, 423], [r.text for r in tries]
        r = await raw.post("/v1/me/payment-pin/verifications", json={"pin": "246802"}, headers=user)
        assert (r.status_code, r.json()["code"]) == (423, "payment_pin_locked")  # even the right PIN, while locked
        status = (await raw.get("/v1/me/payment-pin", headers=user)).json()
        assert status["locked"] is True and status["tries_left"] == 0 and status["locked_until"]
        # A merchant or operator is not a user: no PIN of theirs here.
        admin = {"Authorization": f"Bearer {stack.keys['admin_key']}"}
        assert (await raw.get("/v1/me/payment-pin", headers=admin)).json()["code"] == "route_forbidden"


async def test_page_prefixes_reach_the_web_process_with_cookies_and_no_identity(make_stack: StackFactory) -> None:
    pages = FastAPI()

    @pages.api_route("/{path:path}", methods=["GET", "POST"])
    async def echo(path: str, request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        response = JSONResponse(
            {"path": "/" + path, "query": request.url.query, "body": body, "headers": dict(request.headers.items())}
        )
        response.set_cookie("s", "v", httponly=True, secure=True, samesite="strict")
        response.headers.append("set-cookie", "t=w; Path=/; Secure")
        return response

    web = ThreadServer(pages).start()
    try:
        stack: Stack = await make_stack(web_url=web.base_url)
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
            sent = {"Cookie": "s=1", "X-Juhe-Identity": "forged", "Content-Type": "text/plain"}
            r = await raw.post("/wallet/pin?lang=en", content=b"a=1", headers=sent)
            assert r.status_code == 200, r.text
            seen = r.json()
            assert (seen["path"], seen["query"], seen["body"]) == ("/wallet/pin", "lang=en", "a=1")
            assert seen["headers"]["cookie"] == "s=1" and "x-juhe-identity" not in seen["headers"]
            assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert len(r.headers.get_list("set-cookie")) == 2
            assert (await raw.get("/static/app.css")).json()["path"] == "/static/app.css"
            assert (await raw.get("/walletx")).status_code == 404  # prefixes end on a "/" boundary
    finally:
        web.stop()


async def test_redeeming_links_is_rate_limited_per_browser_address(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(wallet_sign_in_rate_max=2)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
        tries = [
            await raw.post(
                "/v1/web/wallet-sessions",
                json={"token": "wsl_x.guess"},
                headers={**WEB, "X-Forwarded-For": "203.0.113.7"},
            )
            for _ in range(3)
        ]
        assert [r.status_code for r in tries] == [401, 401, 429], [r.text for r in tries]
        assert tries[2].json()["code"] == "rate_limited" and int(tries[2].headers["Retry-After"]) >= 1
        # Another browser is not held back by the first one's window.
        link = await _link(stack, raw, stack.keys["user_id"])
        other = {**WEB, "X-Forwarded-For": "198.51.100.9"}
        r = await raw.post("/v1/web/wallet-sessions", json={"token": link["url"].split("token=")[1]}, headers=other)
        assert r.status_code == 201, r.text


async def test_my_applicable_coupons_are_a_signed_in_users_and_marketing_down_is_503(make_stack: StackFactory) -> None:
    """`GET /v1/me/applicable-coupons` (the hosted checkout's coupons): a user token only — the platform's key is
    refused, as is a query without its merchant or amount — and marketing unreachable is a retryable 503 (this
    stack's marketing is a dead address; the list itself is proven on the real platform by the checkout's browser
    test)."""
    stack: Stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as raw:
        user = await _session(stack, raw)
        query: dict[str, str | int] = {"merchant_id": "mch_demo", "order_amount_minor": 2_500, "currency": "CNY"}
        admin = {"Authorization": f"Bearer {stack.keys['admin_key']}"}
        refused = await raw.get("/v1/me/applicable-coupons", params=query, headers=admin)
        assert (refused.status_code, refused.json()["code"]) == (403, "route_forbidden")
        bad = await raw.get("/v1/me/applicable-coupons", params={"merchant_id": "mch_demo"}, headers=user)
        assert bad.status_code == 422, bad.text
        down = await raw.get("/v1/me/applicable-coupons", params=query, headers=user)
        assert (down.status_code, down.json()["code"], down.json()["retryable"]) == (503, "upstream_unavailable", True)
