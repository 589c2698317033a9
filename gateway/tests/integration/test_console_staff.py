"""Console staff at the gateway over real HTTP and the real database (gateway/flows/staff.py, docs/consoles.md):
invitations used once, argon2id passwords, sessions with idle expiry and sign-out everywhere, lockout, TOTP with
replay refusal and recovery codes, roles that hold on the public API too, the last owner kept, maker-checker."""

from __future__ import annotations

from typing import Any

import httpx
import pyotp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.config import DEMO_WEB_CLIENT_TOKEN
from gateway.tests.integration.conftest import Stack, StackFactory

WEB = {"Authorization": f"Bearer {DEMO_WEB_CLIENT_TOKEN}", "X-Forwarded-For": "198.51.100.7"}
PASSWORD = "correct horse battery staple"


def _token(url: str) -> str:
    return url.split("token=", 1)[1]


async def _accept(raw: httpx.AsyncClient, url: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    body = {"token": _token(url), "purpose": "invitation", "password": password, **extra}
    r = await raw.post("/v1/web/console-links/redemption", json=body, headers=WEB)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}", "X-Forwarded-For": "198.51.100.7"}


async def _owner(stack: Stack, raw: httpx.AsyncClient, email: str = "owner@shop.example") -> dict[str, str]:
    admin = {"Authorization": f"Bearer {stack.keys['admin_key']}"}
    body = {"kind": "merchant", "merchant_id": stack.keys["merchant_id"], "email": email, "role": "owner"}
    r = await raw.post("/v1/platform/staff", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return _bearer((await _accept(raw, r.json()["url"]))["session"])


async def _invite(raw: httpx.AsyncClient, by: dict[str, str], email: str, role: str) -> dict[str, Any]:
    r = await raw.post("/v1/console/staff/invitations", json={"email": email, "role": role}, headers=by)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_staff_invite_sign_in_roles_and_sessions(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(public_base_url="https://pay.example.com")
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        owner = await _owner(stack, raw)
        me = (await raw.get("/v1/console/me", headers=owner)).json()
        assert me["role"] == "owner" and me["merchant_id"] == stack.keys["merchant_id"]
        assert "payouts.create" in me["permissions"]

        invited = await _invite(raw, owner, "Finance@Shop.example", "finance")
        assert invited["url"].startswith("https://pay.example.com/console/invitation?token=csl_")
        weak = {"token": _token(invited["url"]), "purpose": "invitation", "password": "short"}
        r = await raw.post("/v1/web/console-links/redemption", json=weak, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (422, "console_password_rejected")
        await _accept(raw, invited["url"])
        r = await raw.post("/v1/web/console-links/redemption", json={**weak, "password": PASSWORD}, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (401, "console_link_invalid")  # used once

        # Only the web process signs in; the e-mail is case-insensitive; wrong password and unknown e-mail alike.
        creds = {"email": "finance@shop.example", "password": PASSWORD}
        r = await raw.post("/v1/web/console-sessions", json=creds, headers={"Authorization": "Bearer nope"})
        assert (r.status_code, r.json()["code"]) == (401, "web_client_invalid")
        for wrong in ({**creds, "password": "wrong password!!"}, {**creds, "email": "nobody@shop.example"}):
            r = await raw.post("/v1/web/console-sessions", json=wrong, headers=WEB)
            assert (r.status_code, r.json()["code"]) == (401, "console_sign_in_failed")
        r = await raw.post("/v1/web/console-sessions", json=creds, headers=WEB)
        assert r.status_code == 201, r.text
        finance = _bearer(r.json())
        assert r.json()["member"]["role"] == "finance"

        # Roles hold on the public API too: a support session may read payments, not create one or pay out.
        support_invite = await _invite(raw, owner, "support@shop.example", "support")
        support = _bearer((await _accept(raw, support_invite["url"]))["session"])
        assert (await raw.get("/v1/payments", headers=support)).status_code == 200
        r = await raw.post("/v1/payments", json={}, headers={**support, "Idempotency-Key": "k1"})
        assert (r.status_code, r.json()["code"]) == (403, "route_forbidden")
        r = await raw.post("/v1/payouts", json={}, headers={**support, "Idempotency-Key": "k2"})
        assert (r.status_code, r.json()["code"]) == (403, "route_forbidden")
        r = await raw.get("/v1/console/api-keys", headers=support)
        assert (r.status_code, r.json()["code"]) == (403, "console_permission_denied")
        r = await raw.post(
            "/v1/console/staff/invitations", json={"email": "x@y.example", "role": "owner"}, headers=support
        )
        assert (r.status_code, r.json()["code"]) == (403, "console_permission_denied")
        r = await raw.post(
            "/v1/platform/staff", json={"kind": "operator", "email": "a@b.example", "role": "support"}, headers=owner
        )
        assert (r.status_code, r.json()["code"]) == (403, "route_forbidden")  # a session is no admin key

        # Another merchant's member cannot be touched: not found.
        other = await stack.new_merchant("Other shop")
        admin = {"Authorization": f"Bearer {stack.keys['admin_key']}"}
        body = {"kind": "merchant", "merchant_id": other["merchant_id"], "email": "boss@other.example", "role": "owner"}
        other_owner = (await raw.post("/v1/platform/staff", json=body, headers=admin)).json()
        r = await raw.post(f"/v1/console/staff/{other_owner['staff_id']}/role", json={"role": "support"}, headers=owner)
        assert (r.status_code, r.json()["code"]) == (404, "staff_not_found")

        # A role change holds from the next request; the last owner stays; removal ends the sessions at once.
        r = await raw.post(
            f"/v1/console/staff/{support_invite['staff_id']}/role", json={"role": "finance"}, headers=owner
        )
        assert r.status_code == 200, r.text
        assert "payouts.create" in (await raw.get("/v1/console/me", headers=support)).json()["permissions"]
        r = await raw.post(f"/v1/console/staff/{me['staff_id']}/role", json={"role": "admin"}, headers=owner)
        assert (r.status_code, r.json()["code"]) == (422, "staff_role_invalid")  # nobody changes their own role
        r = await raw.post(f"/v1/console/staff/{support_invite['staff_id']}/removal", headers=owner)
        assert r.status_code == 200 and r.json()["status"] == "removed"
        r = await raw.get("/v1/console/me", headers=support)
        assert (r.status_code, r.json()["code"]) == (401, "token_invalid")

        # Sign out everywhere ends every session of the member.
        second = _bearer((await raw.post("/v1/web/console-sessions", json=creds, headers=WEB)).json())
        r = await raw.post("/v1/console/me/sign-out", json={"everywhere": True}, headers=finance)
        assert r.json()["sessions_ended"] == 3  # the invitation's, and the two sign-ins
        for session in (finance, second):
            assert (await raw.get("/v1/console/me", headers=session)).status_code == 401

        # An idle session ends (idle deadline passed in the database).
        third_session = (await raw.post("/v1/web/console-sessions", json=creds, headers=WEB)).json()
        third = _bearer(third_session)
        engine = create_async_engine(stack.database_url)
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE staff_sessions SET idle_expires_at = now() - interval '1 second' WHERE session_id = :id"),
                {"id": third_session["token"].split(".")[0]},
            )
        await engine.dispose()
        assert (await raw.get("/v1/console/me", headers=third)).status_code == 401

        # The audit log: every write above, with actor, action and address; only this merchant's entries.
        entries = (await raw.get("/v1/console/audit", params={"limit": 100}, headers=owner)).json()["data"]
        actions = {e["action"] for e in entries}
        assert {
            "staff.invited",
            "staff.invitation_accepted",
            "staff.role_changed",
            "staff.removed",
            "staff.sign_in",
            "staff.sign_out_everywhere",
        } <= actions
        assert all(e["merchant_id"] == stack.keys["merchant_id"] for e in entries)
        changed = next(e for e in entries if e["action"] == "staff.role_changed")
        assert changed["before"] == {"role": "support"} and changed["after"] == {"role": "finance"}
        assert changed["ip"] == "198.51.100.7"

        # A full page of the largest size still says there is more (the page asks one row beyond its limit).
        note = {"action": "payout.requested", "target": "po_test"}
        for _ in range(101 - len(entries)):
            assert (await raw.post("/v1/console/audit", json=note, headers=owner)).status_code == 201
        first = (await raw.get("/v1/console/audit", params={"limit": 100}, headers=owner)).json()
        assert len(first["data"]) == 100 and first["has_more"] is True
        rest = (
            await raw.get("/v1/console/audit", params={"limit": 100, "cursor": first["next_cursor"]}, headers=owner)
        ).json()
        assert len(rest["data"]) >= 1 and rest["has_more"] is False
        assert {e["audit_id"] for e in rest["data"]}.isdisjoint(e["audit_id"] for e in first["data"])


async def test_lockout_totp_recovery_codes_and_maker_checker(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack(staff_refund_approval_threshold_minor=10_000)
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        owner = await _owner(stack, raw)
        creds = {"email": "owner@shop.example", "password": PASSWORD}

        # TOTP: enrol, confirm (recovery codes once), then sign-in needs a code; a used code does not work twice.
        secret = (await raw.post("/v1/console/me/totp", headers=owner)).json()["secret"]
        r = await raw.post("/v1/console/me/totp/confirmation", json={"code": "000000"}, headers=owner)
        assert (r.status_code, r.json()["code"]) == (422, "console_totp_invalid")
        r = await raw.post("/v1/console/me/totp/confirmation", json={"code": pyotp.TOTP(secret).now()}, headers=owner)
        assert r.status_code == 200, r.text
        codes = r.json()["recovery_codes"]
        assert len(codes) == 10
        r = await raw.post("/v1/web/console-sessions", json=creds, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (401, "console_totp_required")
        ticket = r.json()["ticket"]
        body = {"ticket": ticket, "code": codes[0]}
        r = await raw.post("/v1/web/console-sessions/second-factor", json=body, headers=WEB)
        assert r.status_code == 201, r.text
        r = await raw.post("/v1/web/console-sessions/second-factor", json=body, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (401, "console_link_invalid")  # the ticket works once
        ticket = (await raw.post("/v1/web/console-sessions", json=creds, headers=WEB)).json()["ticket"]
        r = await raw.post(
            "/v1/web/console-sessions/second-factor", json={"ticket": ticket, "code": codes[0]}, headers=WEB
        )
        assert (r.status_code, r.json()["code"]) == (401, "console_sign_in_failed")  # a recovery code works once

        # Maker-checker: at or above the threshold a refund waits for someone else's approval.
        admin_invite = await _invite(raw, owner, "admin@shop.example", "admin")
        admin = _bearer((await _accept(raw, admin_invite["url"]))["session"])
        small = {"payment_id": "pay_1", "amount_minor": 9_999}
        assert (await raw.post("/v1/console/refund-requests", json=small, headers=admin)).json()["status"] == "approved"
        big = (
            await raw.post("/v1/console/refund-requests", json={**small, "amount_minor": 10_000}, headers=admin)
        ).json()
        assert big["status"] == "pending"
        r = await raw.post(f"/v1/console/refund-requests/{big['request_id']}/approval", headers=admin)
        assert (r.status_code, r.json()["code"]) == (403, "refund_self_approval")
        r = await raw.post(f"/v1/console/refund-requests/{big['request_id']}/approval", headers=owner)
        assert (
            r.status_code == 200 and r.json()["status"] == "approved" and r.json()["decided_by"] != big["requested_by"]
        )
        r = await raw.post(f"/v1/console/refund-requests/{big['request_id']}/rejection", headers=owner)
        assert (r.status_code, r.json()["code"]) == (409, "refund_request_state")

        # Nobody hands out more than their own role: an admin, who may not pay out, makes no finance member or owner
        # (not by invitation, not by a role change) and does not touch an owner.
        for role in ("finance", "owner"):
            body = {"email": f"new-{role}@shop.example", "role": role}
            r = await raw.post("/v1/console/staff/invitations", json=body, headers=admin)
            assert (r.status_code, r.json()["code"]) == (422, "staff_role_invalid")
        helper = await _invite(raw, admin, "helper@shop.example", "support")
        r = await raw.post(f"/v1/console/staff/{helper['staff_id']}/role", json={"role": "finance"}, headers=admin)
        assert (r.status_code, r.json()["code"]) == (422, "staff_role_invalid")
        owner_id = (await raw.get("/v1/console/me", headers=owner)).json()["staff_id"]
        r = await raw.post(f"/v1/console/staff/{owner_id}/removal", headers=admin)
        assert (r.status_code, r.json()["code"]) == (422, "staff_role_invalid")
        r = await raw.post(f"/v1/console/staff/{helper['staff_id']}/role", json={"role": "finance"}, headers=owner)
        assert r.status_code == 200 and r.json()["role"] == "finance"  # the owner may

        # Five wrong passwords in a row lock the account, even with the right password afterwards.
        for attempt in range(5):
            r = await raw.post(
                "/v1/web/console-sessions", json={**creds, "password": f"wrong-{attempt}-password"}, headers=WEB
            )
        assert (r.status_code, r.json()["code"]) == (423, "console_account_locked")
        r = await raw.post("/v1/web/console-sessions", json=creds, headers=WEB)
        assert (r.status_code, r.json()["code"]) == (423, "console_account_locked")


async def _operator(admin_key: str, raw: httpx.AsyncClient, role: str) -> dict[str, str]:
    """An operator of `role` who accepted their invitation with a TOTP code (operators must have one), made with
    the platform's `admin_key`."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    body = {"kind": "operator", "email": f"{role}@ops.example", "role": role}
    made = await raw.post("/v1/platform/staff", json=body, headers=admin)
    assert made.status_code == 201, made.text
    link = {"token": _token(made.json()["url"]), "purpose": "invitation"}
    details = (await raw.post("/v1/web/console-links/inspection", json=link, headers=WEB)).json()
    code = pyotp.TOTP(details["totp_secret"]).now()
    return _bearer((await _accept(raw, made.json()["url"], totp_code=code))["session"])


async def test_operator_sessions_hold_to_their_role_on_the_gateways_own_routes(make_stack: StackFactory) -> None:
    """The platform health route checks the session's permission itself (it is not a proxied path); an operator
    session is never the admin key on the platform routes."""
    stack: Stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        admin_key = stack.keys["admin_key"]
        support, risk = await _operator(admin_key, raw, "support"), await _operator(admin_key, raw, "risk")
        owner = await _owner(stack, raw)
        r = await raw.get("/v1/platform/health", headers=support)  # support has platform.health.read
        assert r.status_code == 200 and "services" in r.json(), r.text
        for refused in (risk, owner):  # risk lacks the permission; a merchant's member is no operator
            r = await raw.get("/v1/platform/health", headers=refused)
            assert (r.status_code, r.json()["code"]) == (403, "route_forbidden")
        r = await raw.get("/v1/platform/api-versions", headers=support)
        assert (r.status_code, r.json()["code"]) == (403, "route_forbidden")
