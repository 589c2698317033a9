"""The operator console (`/console/operator`): merchants and their rates, routing with the simulator and route
health, settlement, the reconciliation exceptions pool, ledger look-up and platform health.

Every route is declared on the console guard's router with the one permission it needs (docs/consoles.md, "The
operator console"); the guard checks the session, the role and the form's CSRF token on the server before any of
this runs, and every call below goes to the gateway as the signed-in operator, whose role the gateway checks
again. A write made through another service (a fee rate change) is recorded in the console audit log with the
record before and after. Outcomes travel as codes (`?done=` / `?error=`), never as reflected text.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Query
from fastapi.responses import Response

from libs.common.logging import get_logger
from web.clients.gateway import GatewayProblem, GatewayUnavailable
from web.clients.operator import OperatorApi, items_of
from web.console import Console, ConsoleContext, ConsoleRouter, audit_entries
from web.i18n import parse_amount_minor

log = get_logger("juhe.web.console.operator")
routes = ConsoleRouter("/console/operator", console="operator")
BASE = "/console/operator"

DONE = (
    "rate_changed",
    "assigned",
    "requeried",
    "resolved",
    "payout_approved",
    "payout_rejected",
    "suspended",
    "resumed",
    "retried",
    "profile_saved",
    "application_created",
    "application_submitted",
    "application_approved",
    "application_rejected",
    "kyc_approved",
    "kyc_rejected",
    "contract_changed",
    "frozen",
    "unfrozen",
    "channel_changed",
)
ERRORS = (
    "rate_invalid",
    "reason_required",
    "reason_missing",
    "amount_invalid",
    "not_found",
    "forbidden",
    "state_conflict",
    "not_requeryable",
    "unavailable",
    "failed",
    "profile_invalid",
    "programme_missing",
    "not_eligible",
    "documents_missing",
    "time_invalid",
    "no_contracted_route",
    "invalid",
)
# How far ahead a changed rate starts: the old one must end in the future (routing refuses an end in the past),
# and one minute lets the operator see the change before it quotes.
RATE_CHANGE_LEAD_SECONDS = 60
RATE_BPS_MAX = 10_000
REASON_LENGTH_MAX = 1000
SUSPENSION_REASON_MAX = 500  # the gateway's limit
STANDING_FIELDS = ("merchant_id", "status", "suspended", "suspension_reason")
METHODS = ("wechat", "alipay", "unionpay", "ecny", "wallet")
SCENES = ("native_qr", "jsapi", "mini_program", "app", "h5", "page", "barcode", "quick", "b2b")
PAYER_CLIENTS = ("other", "wechat", "alipay")
EXCEPTION_STATES = ("unresolved", "open", "assigned", "resolved")


def _text() -> Any:
    """A short optional text query parameter. A fresh `Query` each time: one shared `Query` object takes the name of
    the first parameter it is used for, so every later parameter given it (a second one on a page, or another
    page's) would read that name instead of its own (the ledger's account_id read `merchant_id`)."""
    return Query(default="", max_length=64)


CHINA = ZoneInfo("Asia/Shanghai")  # settlement's business days are China days
# Routing's codes for a special-rate request it refused, as this page says them (services/routing/domain/errors.py).
SPECIAL_RATE_ERRORS = {
    "special_rate_not_eligible": "not_eligible",
    "special_rate_documents_missing": "documents_missing",
    "special_rate_no_contracted_route": "no_contracted_route",
    "merchant_profile_invalid": "profile_invalid",
    "special_rate_application_invalid": "invalid",
    "special_rate_programme_not_found": "programme_missing",
}
ENTITY_TYPES = ("individual", "individual_business", "company", "public_institution", "nonprofit")
DOCUMENT_FIELD = "doc."  # one checkbox per document the programme asks for: doc.<name>
DOCUMENTS_MAX = 20  # routing's limit


def parse_instant(text: str) -> datetime | None:
    """A time the operator typed: `datetime-local` (no offset: a China time, as every time on these pages is shown)
    or ISO 8601 with its offset; None when it is not one (the page says so rather than guess)."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return at.replace(tzinfo=CHINA) if at.tzinfo is None else at


def _nav(ctx: ConsoleContext, current: str) -> list[dict[str, Any]]:
    items = (
        ("", "platform.dashboard.read", "Overview"),
        ("/merchants", "platform.merchants.read", "Merchants"),
        ("/onboarding", "platform.merchants.manage", "Onboard a merchant"),
        ("/kyc", "platform.kyc.review", "KYC review"),
        ("/special-rates", "platform.merchants.read", "Special rates"),
        ("/routing", "platform.routing.read", "Routing"),
        ("/routing/simulate", "platform.routing.read", "Simulator"),
        ("/settlement", "platform.settlement.read", "Settlement"),
        ("/settlement/calendar", "platform.settlement.read", "Settlement calendar"),
        ("/savings", "platform.routing.read", "Savings report"),
        ("/reconciliation", "platform.reconciliation.read", "Reconciliation"),
        ("/wallets", "platform.wallets.read", "Wallet holders"),
        ("/ledger", "platform.ledger.read", "Ledger"),
        ("/audit", "platform.audit.read", "Audit log"),
        ("/health", "platform.health.read", "Platform health"),
    )
    say = ctx.page.gettext
    return [
        {"href": BASE + path, "permission": permission, "label": say(label), "current": path == current}
        for path, permission, label in items
    ]


def _op(ctx: ConsoleContext) -> OperatorApi:
    return OperatorApi(ctx.api)


def _outcome(ctx: ConsoleContext) -> dict[str, Any]:
    q = ctx.page.request.query_params
    done, error = q.get("done"), q.get("error")
    return {"done": done if done in DONE else None, "error": error if error in ERRORS else None}


def _request_id() -> str:
    """One per rendered form: the idempotency key of what it does, so a double submit does it once."""
    return secrets.token_hex(12)


def _error_code(exc: GatewayProblem) -> str:
    log.info("platform refused an operator action", code=exc.code, status=exc.status)
    if exc.status == 404:
        return "not_found"
    if exc.status == 403:
        return "forbidden"
    if exc.code in (
        "reconciliation_exception_resolved",
        "conflict",
        "version_conflict",
        "fee_rate_overlap",
        "payout_not_awaiting_approval",
        "merchant_status_conflict",
        "onboarding_state",
        "special_rate_application_state_conflict",
        "onboarding_kyc_not_held",
        "idempotency_key_reused",
        "merchant_exists",
        "channel_config_changed",
    ):
        return "state_conflict"
    if exc.code == "reconciliation_exception_not_requeryable":
        return "not_requeryable"
    return SPECIAL_RATE_ERRORS.get(exc.code, "invalid" if exc.status == 422 else "failed")


def _page(ctx: ConsoleContext, template: str, current: str, status_code: int = 200, **values: Any) -> Response:
    return ctx.render(
        f"console/operator_{template}.html", status_code, nav=_nav(ctx, current), **_outcome(ctx), **values
    )


async def _guarded(ctx: ConsoleContext, template: str, current: str, load: Any, **values: Any) -> Response:
    """Render a page whose data comes from the gateway: a refusal or an outage is a page saying so, with the status
    it was (the gateway's 403 for a call the operator's role may not make is this page's 403, not a 200)."""
    try:
        data = await load()
    except GatewayProblem as exc:
        return _page(ctx, template, current, exc.status, failure=_error_code(exc), **values)
    except GatewayUnavailable:
        return _page(ctx, template, current, 503, failure="unavailable", **values)
    return _page(ctx, template, current, **data, **values)


# ---- overview ---------------------------------------------------------------------------------------------
@routes.get("", "platform.dashboard.read")
async def overview(ctx: Console) -> Response:
    return _page(ctx, "overview", "")


# ---- merchants --------------------------------------------------------------------------------------------
@routes.get("/merchants", "platform.merchants.read")
async def merchants(ctx: Console, merchant_id: str = _text()) -> Response:
    """Look a merchant up by id: its channels, routing contracts and fee rates (with the change form)."""
    merchant_id = merchant_id.strip()
    if not merchant_id:
        return _page(ctx, "merchants", "/merchants", merchant_id="")
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        data = {
            "merchant": await op.merchant(merchant_id),
            "channels": await op.merchant_channels(merchant_id),
            "standing": await op.merchant_status(merchant_id),
        }
        # Contracts and rates are routing's: a role that reads merchants but not routing sees the rest.
        if ctx.can("platform.routing.read"):
            data |= {"contracts": await op.contracts(merchant_id), "rates": await op.fee_rates(merchant_id=merchant_id)}
        return data

    return await _guarded(ctx, "merchants", "/merchants", load, merchant_id=merchant_id, request_id=_request_id())


@routes.post("/fee-rates/{rate_id}/change", "platform.routing.manage")
async def change_fee_rate(ctx: Console, rate_id: str) -> Response:
    """A rate is immutable (it priced payments); a change ends it a minute from now and starts its replacement at
    the same instant, same scope, new basis points. Both writes carry keys from the form's request id; the audit
    log gets the rate before and after."""
    form = ctx.form
    back_to = {"merchant_id": form["merchant_id"][:64]} if form.get("merchant_id") else {}

    def back(**outcome: str) -> Response:
        return ctx.redirect(f"{BASE}/merchants", **back_to, **outcome)

    text = form.get("rate_bps", "").strip()
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= RATE_BPS_MAX:
        return back(error="rate_invalid")
    rate_bps, request_id = int(text), form.get("request_id") or _request_id()
    op = _op(ctx)
    try:
        before = await op.fee_rate(rate_id)
        start = (datetime.now(UTC) + timedelta(seconds=RATE_CHANGE_LEAD_SECONDS)).replace(microsecond=0)
        await op.expire_fee_rate(rate_id, valid_until=start, version=int(before["version"]), key=f"{request_id}.end")
        keep = ("route_id", "min_fee_minor", "max_fee_minor", "fixed_fee_minor", "industry", "merchant_id")
        body = {k: before[k] for k in keep if before.get(k) is not None}
        body |= {"rate_bps": rate_bps, "valid_from": start.isoformat(), "valid_until": before.get("valid_until")}
        after = await op.create_fee_rate({k: v for k, v in body.items() if v is not None}, key=f"{request_id}.new")
        await ctx.api.audit("fee_rate.changed", rate_id, before, after)
    except GatewayProblem as exc:
        return back(error=_error_code(exc))
    except GatewayUnavailable:
        return back(error="unavailable")
    return back(done="rate_changed")


CONTRACT_FIELDS = ("merchant_id", "route_id", "sub_merchant_id", "enabled", "industry", "version")


@routes.post("/merchants/{merchant_id}/contracts/{route_id}/{action}", "platform.routing.manage")
async def switch_contract(ctx: Console, merchant_id: str, route_id: str, action: str) -> Response:
    """Enable or disable a merchant's routing contract on a route (routing stops or resumes choosing that route
    for it), by routing's versioned write with the version just read: a contract changed meanwhile is "it changed
    meanwhile", nothing written. Audited as `contract.enabled` / `contract.disabled` before and after."""
    merchant_id = merchant_id[:64]

    def back(**outcome: str) -> Response:
        return ctx.redirect(f"{BASE}/merchants", merchant_id=merchant_id, **outcome)

    if action not in ("enable", "disable"):
        return back(error="not_found")
    op = _op(ctx)
    try:
        before = await op.contract(merchant_id, route_id)
        body = {
            "sub_merchant_id": before["sub_merchant_id"],
            "enabled": action == "enable",
            "industry": before.get("industry"),
            "expected_version": int(before["version"]),
        }
        key = f"{ctx.form.get('request_id') or _request_id()}.{action}.{route_id}"
        after = await op.put_contract(merchant_id, route_id, {k: v for k, v in body.items() if v is not None}, key=key)
        await ctx.api.audit(
            f"contract.{action}d",
            f"{merchant_id}/{route_id}",
            {k: before.get(k) for k in CONTRACT_FIELDS},
            {k: after.get(k) for k in CONTRACT_FIELDS},
        )
    except GatewayProblem as exc:
        return back(error=_error_code(exc))
    except GatewayUnavailable:
        return back(error="unavailable")
    return back(done="contract_changed")


CHANNEL_FIELDS = ("channel", "mode", "enabled", "priority", "version")  # what the audit keeps: never the config
CHANNEL_ACTIONS = ("enable", "disable", "priority")
PRIORITY_MAX = 10_000  # the cashier's bound


@routes.post("/merchants/{merchant_id}/channels/{channel}/{mode}/{action}", "platform.merchants.manage")
async def change_channel(ctx: Console, merchant_id: str, channel: str, mode: str, action: str) -> Response:
    """Switch one of the merchant's channel configurations (test or live) on or off, or set its fallback priority,
    without its secrets ever passing through the console: the cashier's PATCH with the version just read (changed
    meanwhile: "it changed meanwhile", nothing written). Audited as `channel.enabled` / `.disabled` /
    `.priority_changed` with the configuration's switches before and after."""
    merchant_id = merchant_id[:64]

    def back(**outcome: str) -> Response:
        return ctx.redirect(f"{BASE}/merchants", merchant_id=merchant_id, **outcome)

    if action not in CHANNEL_ACTIONS or mode not in ("test", "live"):
        return back(error="not_found")
    change: dict[str, Any] = {"enabled": action == "enable"}
    if action == "priority":
        text = ctx.form.get("priority", "").strip()
        if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= PRIORITY_MAX:
            return back(error="invalid")
        change = {"priority": int(text)}
    op = _op(ctx)
    try:
        configs = [c for c in await op.merchant_channels(merchant_id) if (c["channel"], c["mode"]) == (channel, mode)]
        if not configs:
            return back(error="not_found")
        before = configs[0]
        key = f"{ctx.form.get('request_id') or _request_id()}.{action}.{channel}.{mode}"
        after = await op.patch_channel(
            merchant_id, channel, {"mode": mode, "version": before["version"], **change}, key=key
        )
        audited = {"enable": "enabled", "disable": "disabled", "priority": "priority_changed"}[action]
        await ctx.api.audit(
            f"channel.{audited}",
            f"{merchant_id}/{channel}/{mode}",
            {k: before.get(k) for k in CHANNEL_FIELDS},
            {k: after.get(k) for k in CHANNEL_FIELDS},
        )
    except GatewayProblem as exc:
        return back(error=_error_code(exc))
    except GatewayUnavailable:
        return back(error="unavailable")
    return back(done="channel_changed")


@routes.post("/merchants/{merchant_id}/suspend", "platform.merchants.manage")
async def suspend_merchant(ctx: Console, merchant_id: str) -> Response:
    """From the next request on, every gateway replica refuses the merchant's writes (reads, refunds and closing
    stay allowed); the gateway records the change and the console audit log before and after."""
    return await _set_standing(ctx, merchant_id, suspend=True)


@routes.post("/merchants/{merchant_id}/resume", "platform.merchants.manage")
async def resume_merchant(ctx: Console, merchant_id: str) -> Response:
    return await _set_standing(ctx, merchant_id, suspend=False)


async def _set_standing(ctx: ConsoleContext, merchant_id: str, *, suspend: bool) -> Response:
    merchant_id = merchant_id[:64]

    def back(**outcome: str) -> Response:
        return ctx.redirect(f"{BASE}/merchants", merchant_id=merchant_id, **outcome)

    reason = (ctx.form.get("reason") or "").strip()
    if not reason or len(reason) > SUSPENSION_REASON_MAX:
        return back(error="reason_missing")
    op = _op(ctx)
    try:
        before = await op.merchant_status(merchant_id)
        after = await op.set_standing(merchant_id, suspend=suspend, reason=reason)
        await ctx.api.audit(
            "merchant.suspended" if suspend else "merchant.resumed",
            merchant_id,
            {k: before.get(k) for k in STANDING_FIELDS},
            {k: after.get(k) for k in STANDING_FIELDS},
        )
    except GatewayProblem as exc:
        return back(error=_error_code(exc))
    except GatewayUnavailable:
        return back(error="unavailable")
    return back(done="suspended" if suspend else "resumed")


# ---- onboarding in one call ------------------------------------------------------------------------------------
ONBOARDING_ENTITY_TYPES = ("company", "individual_business", "individual")  # the gateway's (docs/onboarding.md)
ONBOARDING_CHANNELS = ("wechatpay", "alipay", "unionpay", "ecny")
CYCLES = {
    "t_plus:1": {"kind": "t_plus", "days": 1},
    "t_plus:0": {"kind": "t_plus", "days": 0},
    "d_plus:1": {"kind": "d_plus", "days": 1},
    "weekly:0": {"kind": "weekly", "days": 0},
}
ONBOARDING_SUMMARY = ("onboarding_id", "merchant_id", "status")


def onboarding_request(form: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The gateway's one-call request from the console's form, or (None, the field that is not usable). Only what
    the page itself must shape is checked here (a JSON configuration, numbers, a choice from a list); the gateway
    checks everything else and says which field it refused."""
    text = {k: (form.get(k) or "").strip() for k in form}
    config_text = text.get("channel_config") or "{}"
    try:
        config = json.loads(config_text)
    except ValueError:
        return None, "channel_config"
    if not isinstance(config, dict):
        return None, "channel_config"
    fee = text.get("platform_fee_rate_bps", "0") or "0"
    if not (fee.isascii() and fee.isdigit() and int(fee) <= RATE_BPS_MAX):
        return None, "platform_fee_rate_bps"
    if text.get("entity_type") not in ONBOARDING_ENTITY_TYPES:
        return None, "entity_type"
    if text.get("channel") not in ONBOARDING_CHANNELS:
        return None, "channel"
    body: dict[str, Any] = {
        "legal_name": text.get("legal_name", ""),
        "entity_type": text["entity_type"],
        "industry_code": text.get("industry_code", ""),
        "legal_representative": {
            "name": text.get("representative_name", ""),
            "id_number": text.get("representative_id_number", "").upper(),
        },
        "contact": {
            "name": text.get("contact_name", ""),
            "email": text.get("contact_email", ""),
            "phone": text.get("contact_phone", ""),
        },
        "settlement_account": {
            "account_name": text.get("account_name", ""),
            "account_number": text.get("account_number", ""),
            "bank_name": text.get("bank_name", ""),
        },
        "channels": [
            {
                "channel": text["channel"],
                "route_id": text.get("route_id", ""),
                "sub_merchant_id": text.get("sub_merchant_id", ""),
                "config": config,
            }
        ],
        "settlement": {
            "cycle": CYCLES.get(text.get("cycle", ""), CYCLES["t_plus:1"]),
            "platform_fee_rate_bps": int(fee),
        },
        "key_mode": "live" if text.get("key_mode") == "live" else "test",
    }
    optional = {
        "merchant_id": text.get("merchant_id"),
        "display_name": text.get("display_name"),
        "webhook_url": text.get("webhook_url"),
    }
    if text["entity_type"] != "individual":
        optional["business_licence_number"] = text.get("business_licence_number", "").upper()
    return body | {k: v for k, v in optional.items() if v}, None


ONBOARDING_STEPS = ("identity", "kyc", "ledger", "cashier", "routing", "settlement")  # the order they run in


def ordered_steps(onboarding: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The steps in the order the flow runs them (the stored document's keys come back in any order), any step this
    page does not know last."""
    steps: dict[str, Any] = onboarding.get("steps") or {}
    known = [name for name in ONBOARDING_STEPS if name in steps]
    return [(name, steps[name]) for name in known + sorted(set(steps) - set(known))]


def _refused_fields(exc: GatewayProblem) -> list[str]:
    """The fields the gateway's 422 names (`errors[].loc` or `.field`), dotted, without the leading `body`."""
    fields = []
    for err in exc.body.get("errors") or []:
        loc = err.get("loc") if isinstance(err, dict) else None
        if isinstance(loc, list):
            fields.append(".".join(str(p) for p in loc if p != "body"))
        elif isinstance(err, dict) and err.get("field"):
            fields.append(str(err["field"]))
    return [f for f in fields if f][:10]


def _onboarding_form(ctx: ConsoleContext, status_code: int = 200, **values: Any) -> Response:
    return _page(
        ctx,
        "onboarding",
        "/onboarding",
        status_code,
        entity_types=ONBOARDING_ENTITY_TYPES,
        channels=ONBOARDING_CHANNELS,
        cycles=tuple(CYCLES),
        request_id=_request_id(),
        **values,
    )


@routes.get("/onboarding", "platform.merchants.manage")
async def onboarding_form(ctx: Console) -> Response:
    """The one-call onboarding form: legal details, entity type, industry, representative, contact, settlement
    account, a channel (its configuration, route and the merchant's id at the channel), settlement, key mode."""
    return _onboarding_form(ctx, form={})


@routes.post("/onboarding", "platform.merchants.manage")
async def onboard_merchant(ctx: Console) -> Response:
    """Onboard through the gateway as the operator (`POST /v1/console/merchant-onboardings`, the form's request id
    the Idempotency-Key: a double submit is the same merchant). The answer is shown once, not redirected to: it holds
    the merchant's API key secret and webhook secret, which travel in no URL and are not cached; audited without
    them."""
    form = dict(ctx.form)
    body, bad_field = onboarding_request(form)
    kept = {k: v for k, v in form.items() if k not in ("csrf", "request_id")}
    if body is None:
        return _onboarding_form(ctx, 422, form=kept, failure="invalid", refused=[bad_field])
    key = f"console-onboarding-{form.get('request_id') or _request_id()}"
    try:
        created = await _op(ctx).onboard(body, key=key)
        await ctx.api.audit(
            "merchant.onboarded",
            str(created["merchant_id"]),
            None,
            {k: created.get(k) for k in ONBOARDING_SUMMARY} | _onboarding_summary(created),
        )
    except GatewayProblem as exc:
        refused = _refused_fields(exc) if exc.status == 422 else []
        return _onboarding_form(ctx, exc.status, form=kept, failure=_error_code(exc), refused=refused)
    except GatewayUnavailable:
        return _onboarding_form(ctx, 503, form=kept, failure="unavailable")
    response = _page(
        ctx,
        "onboarding_status",
        "/onboarding",
        201,
        onboarding=created,
        steps=ordered_steps(created),
        credentials=created,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.get("/onboarding/{onboarding_id}", "platform.merchants.read")
async def onboarding_status(ctx: Console, onboarding_id: str) -> Response:
    """Follow an onboarding: its status and every step's (reasons of a refused one, why a pending one waits)."""
    if not (len(onboarding_id) <= 64 and set(onboarding_id) <= ONBOARDING_ID_CHARS):
        return _page(ctx, "onboarding_status", "/onboarding", 404, failure="not_found")

    async def load() -> dict[str, Any]:
        onboarding = await _op(ctx).onboarding(onboarding_id)
        return {"onboarding": onboarding, "steps": ordered_steps(onboarding)}

    return await _guarded(ctx, "onboarding_status", "/onboarding", load, request_id=_request_id())


# ---- the KYC review queue ------------------------------------------------------------------------------------
ONBOARDING_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@routes.get("/kyc", "platform.kyc.review")
async def kyc_queue(ctx: Console, cursor: str = Query(default="", max_length=64)) -> Response:
    """The onboardings a step refused (the gateway's `GET /v1/platform/merchant-onboardings?status=rejected`),
    oldest first: each refused step with the provider's or the service's reasons; after the finding is cleared
    there, the reviewer runs the refused steps again."""
    after = cursor if cursor and set(cursor) <= ONBOARDING_ID_CHARS else None
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        page = await op.onboardings(status="rejected", cursor=after)
        waiting = [] if after else items_of(await op.onboardings(status="processing", cursor=None))
        return {
            "items": items_of(page),
            "next_cursor": (page or {}).get("next_cursor"),
            "held": [o for o in waiting if held_for_review(o)],
        }

    return await _guarded(ctx, "kyc", "/kyc", load, request_id=_request_id())


@routes.post("/kyc/{onboarding_id}/retry", "platform.kyc.review")
async def retry_onboarding(ctx: Console, onboarding_id: str) -> Response:
    """The refused steps back to pending and run again (the gateway's retry: 409 `onboarding_state` when it is not
    rejected any more, shown as "it changed meanwhile"); audited with the steps' states before and after."""
    back = f"{BASE}/kyc"
    if not (len(onboarding_id) <= 64 and set(onboarding_id) <= ONBOARDING_ID_CHARS):
        return ctx.redirect(back, error="not_found")
    op = _op(ctx)
    try:
        after = await op.retry_onboarding(onboarding_id)
        before = {"status": "rejected", "merchant_id": after.get("merchant_id")}  # retry runs from rejected only
        await ctx.api.audit("onboarding.retried", onboarding_id, before, _onboarding_summary(after))
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error_code(exc))
    except GatewayUnavailable:
        return ctx.redirect(back, error="unavailable")
    return ctx.redirect(back, done="retried")


def held_for_review(onboarding: dict[str, Any]) -> bool:
    """Its KYC step waits on a check the identity provider holds for a manual review (docs/onboarding.md §2)."""
    kyc = (onboarding.get("steps") or {}).get("kyc") or {}
    return kyc.get("status") == "pending" and (kyc.get("last_error") or {}).get("code") == "kyc_in_review"


@routes.post("/kyc/{onboarding_id}/decision", "platform.kyc.review")
async def decide_held_kyc(ctx: Console, onboarding_id: str) -> Response:
    """Approve, or reject with a reason, a KYC check the provider holds (the gateway's
    `POST /v1/console/merchant-onboardings/{id}/kyc-review`): approved, the onboarding runs on and activates the
    merchant; rejected, the step is refused with the reason and the onboarding joins the refused ones. Audited with
    the steps before and after; a check decided meanwhile is "it changed meanwhile"."""
    back = f"{BASE}/kyc"
    if not (len(onboarding_id) <= 64 and set(onboarding_id) <= ONBOARDING_ID_CHARS):
        return ctx.redirect(back, error="not_found")
    approve = ctx.form.get("decision") == "approve"
    reason = (ctx.form.get("reason") or "").strip()
    if not approve and (not reason or len(reason) > SUSPENSION_REASON_MAX):
        return ctx.redirect(back, error="reason_missing")
    op = _op(ctx)
    try:
        before = await op.onboarding(onboarding_id)
        after = await op.review_held_kyc(onboarding_id, approve=approve, reason=None if approve else reason)
        await ctx.api.audit(
            "onboarding.kyc_approved" if approve else "onboarding.kyc_rejected",
            onboarding_id,
            _onboarding_summary(before),
            _onboarding_summary(after),
        )
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error_code(exc))
    except GatewayUnavailable:
        return ctx.redirect(back, error="unavailable")
    return ctx.redirect(f"{BASE}/onboarding/{onboarding_id}", done="kyc_approved" if approve else "kyc_rejected")


def _onboarding_summary(onboarding: dict[str, Any]) -> dict[str, Any]:
    steps = onboarding.get("steps") or {}
    return {
        "status": onboarding.get("status"),
        "merchant_id": onboarding.get("merchant_id"),
        "steps": {name: step.get("status") for name, step in steps.items()},
    }


# ---- special-rate programmes ----------------------------------------------------------------------------------
@routes.get("/special-rates", "platform.merchants.read")
async def special_rates(
    ctx: Console, merchant_id: str = _text(), cursor: str = Query(default="", max_length=64)
) -> Response:
    """A merchant's special-rate standing (docs/special-rates.md): routing's profile of it (entity type and MCC, as
    the onboarding set them), every programme with whether it qualifies and why not, and its applications with the
    next step each allows (submit, approve from a date, reject with a reason)."""
    merchant_id = merchant_id.strip()
    if not merchant_id:
        return _page(ctx, "special_rates", "/special-rates", merchant_id="")
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        profile = await op.merchant_profile(merchant_id)
        programmes = {p["programme_id"]: p for p in await op.programmes()}
        eligibility = await op.eligibility(merchant_id) if profile else []
        page = await op.special_rate_applications(merchant_id, cursor or None)
        return {
            "profile": profile,
            "programmes": programmes,
            "eligibility": eligibility,
            "applications": items_of(page),
            "next_cursor": (page or {}).get("next_cursor"),
        }

    return await _guarded(
        ctx,
        "special_rates",
        "/special-rates",
        load,
        merchant_id=merchant_id,
        entity_types=ENTITY_TYPES,
        request_id=_request_id(),
    )


def _special_rates_back(ctx: ConsoleContext, merchant_id: str, **outcome: str) -> Response:
    return ctx.redirect(f"{BASE}/special-rates", merchant_id=merchant_id[:64], **outcome)


async def _special_rate_write(ctx: ConsoleContext, merchant_id: str, done: str, write: Any) -> Response:
    """Run one write of this section (it audits itself), then back to the merchant's page with the outcome."""
    try:
        await write()
    except GatewayProblem as exc:
        return _special_rates_back(ctx, merchant_id, error=_error_code(exc))
    except GatewayUnavailable:
        return _special_rates_back(ctx, merchant_id, error="unavailable")
    return _special_rates_back(ctx, merchant_id, done=done)


@routes.post("/special-rates/profile", "platform.merchants.manage")
async def save_merchant_profile(ctx: Console) -> Response:
    """Correct routing's profile (what eligibility is computed from) when the onboarding's data was wrong."""
    form = ctx.form
    merchant_id = (form.get("merchant_id") or "").strip()[:64]
    entity_type, industry_code = form.get("entity_type", ""), (form.get("industry_code") or "").strip()
    if entity_type not in ENTITY_TYPES or not (
        len(industry_code) == 4 and industry_code.isascii() and industry_code.isdigit()
    ):
        return _special_rates_back(ctx, merchant_id, error="profile_invalid")
    op = _op(ctx)

    async def write() -> None:
        before = await op.merchant_profile(merchant_id)
        after = await op.put_merchant_profile(
            merchant_id,
            {"entity_type": entity_type, "industry_code": industry_code},
            key=f"{form.get('request_id') or _request_id()}.profile",
        )
        await ctx.api.audit("merchant_profile.changed", merchant_id, before, after)

    return await _special_rate_write(ctx, merchant_id, "profile_saved", write)


@routes.post("/special-rates/applications", "platform.merchants.manage")
async def create_special_rate_application(ctx: Console) -> Response:
    """A draft application for a programme the merchant qualifies for (routing checks it again: 422 when not), with
    the documents the operator ticked as received."""
    form = ctx.form
    merchant_id = (form.get("merchant_id") or "").strip()[:64]
    programme_id = (form.get("programme_id") or "").strip()[:48]
    if not merchant_id or not programme_id:
        return _special_rates_back(ctx, merchant_id, error="programme_missing")
    documents = sorted(k.removeprefix(DOCUMENT_FIELD) for k, v in form.items() if k.startswith(DOCUMENT_FIELD) and v)
    body = {"merchant_id": merchant_id, "programme_id": programme_id, "documents": documents[:DOCUMENTS_MAX]}
    op = _op(ctx)

    async def write() -> None:
        created = await op.create_special_rate_application(body, key=f"{form.get('request_id') or _request_id()}.new")
        await ctx.api.audit("special_rate.created", str(created["application_id"]), None, _application(created))

    return await _special_rate_write(ctx, merchant_id, "application_created", write)


APPLICATION_FIELDS = (
    "application_id",
    "merchant_id",
    "programme_id",
    "status",
    "documents",
    "effective_from",
    "effective_until",
    "rejection_reason",
    "rate_ids",
)
APPLICATION_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
MOVED = {"submit": "submitted", "approve": "approved", "reject": "rejected"}  # routing's transitions → outcome
SPECIAL_RATE_REASON_MAX = 500  # routing's limit


def _application(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a.get(k) for k in APPLICATION_FIELDS}


@routes.post("/special-rates/applications/{application_id}/{action}", "platform.merchants.manage")
async def move_special_rate_application(ctx: Console, application_id: str, action: str) -> Response:
    """submit (every required document named), approve (from a time, default now: routing writes the merchant's
    rates, quoted from then on) or reject (with a reason); each a compare-and-set at routing, audited before/after."""
    form = ctx.form
    merchant_id = (form.get("merchant_id") or "").strip()[:64]
    if action not in MOVED or not (len(application_id) <= 64 and set(application_id) <= APPLICATION_ID_CHARS):
        return _special_rates_back(ctx, merchant_id, error="not_found")
    body: dict[str, Any] = {}
    if action == "approve" and (form.get("effective_from") or "").strip():
        at = parse_instant(form["effective_from"])
        if at is None:
            return _special_rates_back(ctx, merchant_id, error="time_invalid")
        body["effective_from"] = at.isoformat()
    if action == "reject":
        reason = (form.get("reason") or "").strip()
        if not reason or len(reason) > SPECIAL_RATE_REASON_MAX:
            return _special_rates_back(ctx, merchant_id, error="reason_missing")
        body["reason"] = reason
    op = _op(ctx)

    async def write() -> None:
        before = await op.special_rate_application(application_id)
        key = f"{form.get('request_id') or _request_id()}.{action}.{application_id}"
        after = await op.move_special_rate_application(application_id, action, body, key=key)
        await ctx.api.audit(f"special_rate.{MOVED[action]}", application_id, _application(before), _application(after))

    return await _special_rate_write(ctx, merchant_id, f"application_{MOVED[action]}", write)


# ---- routing ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    """One bar of a server-drawn SVG chart (coordinates in the chart's own units; the template draws it)."""

    label: str
    value: float
    y: int
    width: float
    state: str


CHART_WIDTH = 300
BAR_HEIGHT = 22
BAR_GAP = 8


def success_bars(health: list[dict[str, Any]]) -> list[Bar]:
    """Success rate per route as horizontal bars (0–100 % of the chart width), coloured by circuit state."""
    bars = []
    for i, h in enumerate(health):
        rate = float(h.get("success_rate_estimate") or 0.0)
        state = str((h.get("circuit") or {}).get("state") or "unknown")
        bars.append(Bar(str(h["route_id"]), rate, i * (BAR_HEIGHT + BAR_GAP), round(rate * CHART_WIDTH, 1), state))
    return bars


@routes.get("/routing", "platform.routing.read")
async def routing(ctx: Console) -> Response:
    """Routes, their rates, and each route's circuit state and success rate (chart and the same numbers as a table)."""
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        found = await op.routes()
        health = [await op.route_health(str(r["route_id"])) for r in found]
        rates = await op.fee_rates()
        return {"routes": found, "health": health, "bars": success_bars(health), "rates": rates}

    return await _guarded(
        ctx, "routing", "/routing", load, chart_width=CHART_WIDTH, bar_height=BAR_HEIGHT, request_id=_request_id()
    )


@routes.get("/routing/simulate", "platform.routing.read")
async def simulate(
    ctx: Console,
    merchant_id: str = _text(),
    amount: str = Query(default="", max_length=20),
    scene: str = Query(default="native_qr", max_length=20),
    payer_client: str = Query(default="other", max_length=10),
    methods: list[str] = Query(default=[], max_length=len(METHODS)),
) -> Response:
    """What would this payment do: the chosen route, and why every route was kept or dropped."""
    question = {
        "merchant_id": merchant_id.strip(),
        "amount": amount,
        "scene": scene if scene in SCENES else "native_qr",
        "payer_client": payer_client if payer_client in PAYER_CLIENTS else "other",
        "methods": [m for m in methods if m in METHODS] or ["wechat", "alipay"],
    }
    values: dict[str, Any] = {
        "question": question,
        "methods_all": METHODS,
        "scenes": SCENES,
        "payer_clients": PAYER_CLIENTS,
    }
    if not question["merchant_id"]:
        return _page(ctx, "simulate", "/routing/simulate", **values)
    amount_minor = parse_amount_minor(amount)
    if not amount_minor:
        return _page(ctx, "simulate", "/routing/simulate", failure="amount_invalid", **values)
    asked = {k: question[k] for k in ("merchant_id", "scene", "payer_client", "methods")} | {
        "amount_minor": amount_minor
    }

    async def load() -> dict[str, Any]:
        return {"answer": await _op(ctx).simulate(asked)}

    return await _guarded(ctx, "simulate", "/routing/simulate", load, **values)


# ---- settlement -------------------------------------------------------------------------------------------
@routes.get("/settlement", "platform.settlement.read")
async def settlement(
    ctx: Console,
    holder_id: str = _text(),
    status: str = Query(default="", max_length=20),
    cursor: str = Query(default="", max_length=64),
) -> Response:
    """Settlement batches and payouts (every merchant's, or one holder's), and the settlement ↔ ledger check."""
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        payouts = await op.payouts(holder_id=holder_id or None, status=status or None, cursor=cursor or None)
        return {
            "batches": await op.batches(holder_id or None),
            "payouts": items_of(payouts),
            "payouts_next": (payouts or {}).get("next_cursor"),
            "consistency": await op.consistency(),
        }

    return await _guarded(
        ctx, "settlement", "/settlement", load, holder_id=holder_id, status=status, request_id=_request_id()
    )


PAYOUT_FIELDS = ("payout_id", "holder_id", "amount_minor", "currency", "status", "decided_by", "decision_reason")


async def _decide_payout(ctx: ConsoleContext, payout_id: str, action: str, reason: str | None) -> Response:
    """Approve or reject a held payout (settlement's compare-and-set: a payout decided meanwhile is 409, shown as
    "it changed meanwhile"); the acting operator's e-mail is what settlement records; audited before/after."""
    back = f"{BASE}/settlement"
    if not (payout_id.startswith("po_") and payout_id[3:].isalnum() and len(payout_id) <= 64):
        return ctx.redirect(back, error="not_found")
    key = f"{ctx.form.get('request_id') or _request_id()}.{action}.{payout_id}"
    try:
        after = await _op(ctx).decide_payout(
            payout_id, action, {"actor": str(ctx.member.get("email")), "reason": reason}, key=key
        )
        # Settlement decides only from pending_approval (a compare-and-set), so that is what it was before.
        before = {k: after.get(k) for k in PAYOUT_FIELDS} | {
            "status": "pending_approval",
            "decided_by": None,
            "decision_reason": None,
        }
        await ctx.api.audit(
            "payout.approved" if action == "approve" else "payout.rejected",
            payout_id,
            before,
            {k: after.get(k) for k in PAYOUT_FIELDS},
        )
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error_code(exc))
    except GatewayUnavailable:
        return ctx.redirect(back, error="unavailable")
    return ctx.redirect(back, done="payout_approved" if action == "approve" else "payout_rejected")


@routes.post("/payouts/{payout_id}/approve", "platform.settlement.manage")
async def approve_payout(ctx: Console, payout_id: str) -> Response:
    """The checker of a merchant's payout at or above the platform's threshold: it is then paid as any payout."""
    return await _decide_payout(ctx, payout_id, "approve", None)


@routes.post("/payouts/{payout_id}/reject", "platform.settlement.manage")
async def reject_payout(ctx: Console, payout_id: str) -> Response:
    """A held payout refused, with the reason the merchant will see; nothing was moved."""
    reason = (ctx.form.get("reason") or "").strip()
    if not reason or len(reason) > REASON_LENGTH_MAX:
        return ctx.redirect(f"{BASE}/settlement", error="reason_missing")
    return await _decide_payout(ctx, payout_id, "reject", reason)


@routes.get("/settlement/calendar", "platform.settlement.read")
async def settlement_calendar(
    ctx: Console, month: str = Query(default="", max_length=7), holder_id: str = _text()
) -> Response:
    """A month of settlement's business-day calendar (holidays, make-up workdays) and, per day, when a payment traded
    that day is settled under the merchant's cycle (the default cycle without a merchant): settlement's own
    computation (`GET /v1/settlement/calendar/schedule`), shown as weeks."""
    today = datetime.now(CHINA).date()
    shown = month if _is_month(month) else today.strftime("%Y-%m")
    first = date.fromisoformat(f"{shown}-01")
    around = {
        "previous": (first - timedelta(days=1)).strftime("%Y-%m"),
        "next": (first + timedelta(days=32)).strftime("%Y-%m"),
    }

    async def load() -> dict[str, Any]:
        schedule = await _op(ctx).calendar_schedule(shown, holder_id.strip() or None)
        return {"schedule": schedule, "weeks": calendar_weeks(schedule["days"])}

    return await _guarded(
        ctx,
        "calendar",
        "/settlement/calendar",
        load,
        month=shown,
        holder_id=holder_id.strip(),
        around=around,
        today=today.isoformat(),
    )


def _is_month(text: str) -> bool:
    try:
        date.fromisoformat(f"{text}-01")
    except ValueError:
        return False
    return len(text) == 7


def calendar_weeks(days: list[dict[str, Any]]) -> list[list[dict[str, Any] | None]]:
    """The month's days as weeks Monday → Sunday (None: a cell before the first or after the last day)."""
    if not days:
        return []
    lead = date.fromisoformat(str(days[0]["day"])).weekday()
    cells: list[dict[str, Any] | None] = [None] * lead + list(days)
    cells += [None] * (-len(cells) % 7)
    return [cells[i : i + 7] for i in range(0, len(cells), 7)]


# ---- the fee savings report ---------------------------------------------------------------------------------
SAVINGS_CHART_WIDTH = 300


def savings_bars(merchants: list[dict[str, Any]]) -> list[Bar]:
    """Each merchant's best projected saving as a horizontal bar, the largest the chart's width."""
    top = max((int(m["best_savings_minor"]) for m in merchants), default=0) or 1
    return [
        Bar(
            str(m["merchant_id"]),
            int(m["best_savings_minor"]),
            i * (BAR_HEIGHT + BAR_GAP),
            round(int(m["best_savings_minor"]) * SAVINGS_CHART_WIDTH / top, 1),
            "savings",
        )
        for i, m in enumerate(merchants)
    ]


@routes.get("/savings", "platform.routing.read")
async def savings(ctx: Console, merchant_id: str = _text()) -> Response:
    """The special-rate savings projection (routing's `GET /v1/special-rate-savings`, docs/special-rates.md): the
    last 30 days' fees platform-wide or for one merchant, and what each eligible programme would have saved; a
    chart of the best saving per merchant with the same numbers as a table."""

    async def load() -> dict[str, Any]:
        report = await _op(ctx).savings(merchant_id.strip() or None)
        ranked = sorted(report.get("merchants", []), key=lambda m: -int(m["best_savings_minor"]))
        return {"report": report, "merchants": ranked, "bars": savings_bars(ranked)}

    return await _guarded(
        ctx,
        "savings",
        "/savings",
        load,
        merchant_id=merchant_id.strip(),
        chart_width=SAVINGS_CHART_WIDTH,
        bar_height=BAR_HEIGHT,
    )


# ---- reconciliation exceptions pool -----------------------------------------------------------------------
@routes.get("/reconciliation", "platform.reconciliation.read")
async def reconciliation(
    ctx: Console,
    state: str = Query(default="unresolved", max_length=12),
    mine: str = Query(default="", max_length=1),
    merchant_id: str = _text(),
    cursor: str = Query(default="", max_length=24),
) -> Response:
    """The pool, oldest first: every unresolved mismatch with its age, assignee and state; cursor pages."""
    state = state if state in EXCEPTION_STATES else "unresolved"
    assignee = str(ctx.member.get("email")) if mine == "1" else None

    async def load() -> dict[str, Any]:
        page = await _op(ctx).exceptions(
            state=state, assignee=assignee, merchant_id=merchant_id or None, cursor=cursor if cursor.isdigit() else None
        )
        return {"items": items_of(page), "next_cursor": (page or {}).get("next_cursor")}

    return await _guarded(
        ctx,
        "reconciliation",
        "/reconciliation",
        load,
        state=state,
        mine=mine == "1",
        merchant_id=merchant_id,
        states=EXCEPTION_STATES,
    )


@routes.get("/reconciliation/{item_id}", "platform.reconciliation.read")
async def reconciliation_item(ctx: Console, item_id: int) -> Response:
    async def load() -> dict[str, Any]:
        return {"item": await _op(ctx).exception(item_id)}

    return await _guarded(ctx, "exception", "/reconciliation", load, request_id=_request_id())


async def _act(ctx: ConsoleContext, item_id: int, action: str, body: dict[str, Any]) -> Response:
    back = f"{BASE}/reconciliation/{item_id}"
    key = f"{ctx.form.get('request_id') or _request_id()}.{action}"
    try:
        await _op(ctx).act_on_exception(item_id, action, {"actor": str(ctx.member.get("email")), **body}, key=key)
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error_code(exc))
    except GatewayUnavailable:
        return ctx.redirect(back, error="unavailable")
    return ctx.redirect(back, done={"assign": "assigned", "requery": "requeried", "resolve": "resolved"}[action])


@routes.post("/reconciliation/{item_id}/assign", "platform.reconciliation.resolve")
async def assign(ctx: Console, item_id: int) -> Response:
    assignee = (ctx.form.get("assignee") or "").strip()[:200] or str(ctx.member.get("email"))
    return await _act(ctx, item_id, "assign", {"assignee": assignee})


@routes.post("/reconciliation/{item_id}/requery", "platform.reconciliation.resolve")
async def requery(ctx: Console, item_id: int) -> Response:
    return await _act(ctx, item_id, "requery", {})


@routes.post("/reconciliation/{item_id}/resolve", "platform.reconciliation.resolve")
async def resolve(ctx: Console, item_id: int) -> Response:
    reason = (ctx.form.get("reason") or "").strip()
    if not reason or len(reason) > REASON_LENGTH_MAX:
        return ctx.redirect(f"{BASE}/reconciliation/{item_id}", error="reason_required")
    return await _act(ctx, item_id, "resolve", {"reason": reason})


# ---- ledger -----------------------------------------------------------------------------------------------
@routes.get("/ledger", "platform.ledger.read")
async def ledger(
    ctx: Console,
    holder_id: str = _text(),
    account_id: str = _text(),
    as_of: str = Query(default="", max_length=32),
    cursor: str = Query(default="", max_length=80),
) -> Response:
    """An account holder's accounts; one account's balance (now, or as of a time: the ledger's counters right after
    the last posting at or before that instant) and statement. A time that is not one is said so, and nothing is
    shown as if it were the balance then."""
    at = parse_instant(as_of) if as_of.strip() else None
    if as_of.strip() and at is None:
        return _page(
            ctx,
            "ledger",
            "/ledger",
            422,
            failure="time_invalid",
            holder_id=holder_id,
            account_id=account_id,
            as_of=as_of,
            accounts=[],
        )
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        data: dict[str, Any] = {"accounts": await op.accounts(holder_id) if holder_id else []}
        if account_id:
            data["balance"] = await op.balance(account_id, at)
            data["statement"] = await op.statement(account_id, cursor or None)
        return data

    return await _guarded(
        ctx, "ledger", "/ledger", load, holder_id=holder_id, account_id=account_id, as_of=as_of, as_of_at=at
    )


# ---- wallet holders -------------------------------------------------------------------------------------------
@routes.get("/wallets", "platform.wallets.read")
async def wallets(ctx: Console, holder_id: str = _text()) -> Response:
    """A wallet holder looked up by id (a user's or a merchant's): KYC status and level, masked documents, each
    sub-account's status and balances, open bills and the latest entries (the ledger's one-snapshot wallet read)."""
    holder_id = holder_id.strip()
    if not holder_id:
        return _page(ctx, "wallets", "/wallets", holder_id="")

    async def load() -> dict[str, Any]:
        return {"wallet": await _op(ctx).wallet(holder_id)}

    return await _guarded(ctx, "wallets", "/wallets", load, holder_id=holder_id, request_id=_request_id())


@routes.post("/wallets/{holder_id}/accounts/{account_id}/{action}", "platform.wallets.manage")
async def freeze_subaccount(ctx: Console, holder_id: str, account_id: str, action: str) -> Response:
    """Freeze (the ledger refuses its debits: payments, withdrawals, transfers out) or unfreeze one of the holder's
    sub-accounts; only an account the holder's wallet lists (an id from elsewhere is not found), by the ledger's
    locked state change; audited as `wallet.frozen` / `wallet.unfrozen` with the status before and after."""
    holder_id = holder_id[:64]

    def back(**outcome: str) -> Response:
        return ctx.redirect(f"{BASE}/wallets", holder_id=holder_id, **outcome)

    if action not in ("freeze", "unfreeze"):
        return back(error="not_found")
    op = _op(ctx)
    try:
        wallet = await op.wallet(holder_id)
        found = [a for a in wallet.get("subaccounts") or [] if a.get("account_id") == account_id]
        if not found:
            return back(error="not_found")
        key = f"{ctx.form.get('request_id') or _request_id()}.{action}.{account_id}"
        after = await op.set_account_frozen(account_id, frozen=action == "freeze", key=key)
        await ctx.api.audit(
            "wallet.frozen" if action == "freeze" else "wallet.unfrozen",
            account_id,
            {"holder_id": holder_id, "status": found[0].get("status")},
            {"holder_id": holder_id, "status": after.get("status")},
        )
    except GatewayProblem as exc:
        return back(error=_error_code(exc))
    except GatewayUnavailable:
        return back(error="unavailable")
    return back(done="frozen" if action == "freeze" else "unfrozen")


# ---- audit log --------------------------------------------------------------------------------------------
@routes.get("/audit", "platform.audit.read")
async def audit(ctx: Console, merchant_id: str = _text(), cursor: str = Query(default="", max_length=64)) -> Response:
    """Every console write (who, when, from where, the record before and after), newest first; by merchant."""

    async def load() -> dict[str, Any]:
        page = await ctx.api.get("/v1/console/audit", merchant_id=merchant_id or None, cursor=cursor or None)
        return {"entries": audit_entries(items_of(page)), "next_cursor": (page or {}).get("next_cursor")}

    return await _guarded(ctx, "audit", "/audit", load, merchant_id=merchant_id)


# ---- platform health --------------------------------------------------------------------------------------
@routes.get("/health", "platform.health.read")
async def health(ctx: Console) -> Response:
    """Every service's readiness, outbox backlog and dead letters, and the consumer groups' lag."""

    async def load() -> dict[str, Any]:
        return {"health": await _op(ctx).platform_health()}

    return await _guarded(ctx, "health", "/health", load)
