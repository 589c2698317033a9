"""The merchant console (`/console/merchant`) and the sign-in pages both consoles share (`/console/...`).

Every route is declared with the permission it needs (web/console: the guard and the registry); the merchant is
always the signed-in member's, never a value from the URL or a form; every read and write goes to the gateway
as the member, whose role the gateway checks again. Forms carry the session's CSRF token and a one-time request id
(the idempotency key of what the form does). docs/consoles.md describes the pages and the role matrix.
"""

from __future__ import annotations

import base64
import csv
import io
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import segno
from fastapi import Query
from fastapi.responses import Response

from libs.common.logging import get_logger
from web.clients.gateway import GatewayProblem, GatewayUnavailable
from web.console import PUBLIC, SIGNED_IN, Console, ConsoleContext, ConsoleRouter, audit_entries, epoch
from web.i18n import parse_amount_minor
from web.sessions import Session, new_csrf

log = get_logger("juhe.web.console.merchant")

shared = ConsoleRouter("/console", console="any")
routes = ConsoleRouter("/console/merchant", console="merchant")

PAGE_SIZE = 20
DASHBOARD_DAYS = 30
MERCHANT_ROLES = ("owner", "admin", "finance", "support", "developer", "read_only")
OVERLAPS = (0, 3600, 86400, 7 * 86400)
STATUSES = ("pending", "processing", "succeeded", "failed", "closed")
CHANNELS = ("wechatpay", "alipay", "unionpay", "ecny", "wallet")
Cursor = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
REFUNDS, API_KEYS, STAFF = "/console/merchant/refunds", "/console/merchant/api-keys", "/console/merchant/staff"
Amount = Annotated[str, Query(max_length=20)]
CHINA = ZoneInfo("Asia/Shanghai")  # the business day of bills and statements (settlement's bill_day)
RECONCILE_PAYMENTS_MAX = 5000  # the cashier's payments read for one day; more → the page says it is partial
RECONCILE_LOOKUPS_MAX = 50  # statement rows the day's read did not find, looked up one by one at the cashier

# Outcomes named by code in ?done= / ?error=: only these are ever shown (nothing from the query is reflected).
DONE = (
    "signed_in",
    "signed_out",
    "refund_requested",
    "refund_made",
    "approved",
    "rejected",
    "payout_requested",
    "key_revoked",
    "invited",
    "role_changed",
    "removed",
    "settings_saved",
    "password_set",
    "welcome",
    "resent",
    "payout_held",
    "created",
    "enabled",
    "disabled",
    "deleted",
    "rotated",
    "link_created",
    "deactivated",
    "stock_created",
    "start",
    "pause",
    "resume",
    "end",
    "redeemed",
    "undone",
)
ERRORS = (
    "amount_invalid",
    "failed",
    "unavailable",
    "insufficient",
    "not_allowed",
    "self_approval",
    "state",
    "role_invalid",
    "last_owner",
    "exists",
    "invalid",
)
PROBLEM_ERRORS = {
    "refund_self_approval": "self_approval",
    "refund_request_state": "state",
    "staff_role_invalid": "role_invalid",
    "staff_last_owner": "last_owner",
    "staff_exists": "exists",
    "console_permission_denied": "not_allowed",
    "route_forbidden": "not_allowed",
    "payout_exceeds_settled_balance": "insufficient",
    "insufficient_funds": "insufficient",
    "refund_exceeds_remaining": "amount_invalid",
    "validation_failed": "invalid",
}


def _nav(ctx: ConsoleContext, current: str) -> list[dict[str, str | bool]]:
    t = ctx.page.gettext
    items = [
        ("", t("Dashboard"), "dashboard.read"),
        ("/payments", t("Payments"), "payments.read"),
        ("/refunds", t("Refunds"), "payments.read"),
        ("/payment-links", t("Payment links"), "payments.read"),
        ("/balances", t("Balances"), "statements.read"),
        ("/statements", t("Statements"), "statements.read"),
        ("/reconciliation", t("Reconciliation"), "statements.read"),
        ("/payouts", t("Payouts"), "payouts.read"),
        ("/coupons", t("Coupons"), "coupons.read"),
        ("/coupons/redeem", t("Redeem a coupon"), "coupons.redeem"),
        ("/webhooks", t("Webhooks"), "webhooks.manage"),
        ("/api-keys", t("API keys"), "api_keys.read"),
        ("/staff", t("Staff"), "staff.read"),
        ("/audit", t("Audit log"), "audit.read"),
        ("/settings", t("Settings"), "settings.manage"),
    ]
    return [
        {"href": f"/console/merchant{p}", "label": label, "permission": perm, "current": p == current}
        for p, label, perm in items
    ]


def _outcome(ctx: ConsoleContext) -> dict[str, Any]:
    q = ctx.page.request.query_params
    done, error = q.get("done"), q.get("error")
    return {"done": done if done in DONE else None, "error": error if error in ERRORS else None}


def _show(
    ctx: ConsoleContext, template: str, current: str, title: str, status_code: int = 200, **values: Any
) -> Response:
    return ctx.render(
        f"console/{template}",
        status_code,
        nav=_nav(ctx, current),
        title=title,
        request_id=secrets.token_hex(12),
        **{**_outcome(ctx), **values},
    )


def _error(exc: GatewayProblem) -> str:
    log.info("platform refused a console action", code=exc.code, status=exc.status)
    return PROBLEM_ERRORS.get(exc.code, "failed")


def _request_id(form: dict[str, str]) -> str:
    rid = form.get("request_id", "")
    return rid if len(rid) == 24 and all(c in "0123456789abcdef" for c in rid) else secrets.token_hex(12)


async def _act(
    ctx: ConsoleContext,
    back: str,
    record_id: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    done: str,
    bad_id: str = "invalid",
    then: Callable[[Any], Awaitable[None]] | None = None,
) -> Response:
    """A button on one of the member's records: `record_id` (from the URL) checked for shape, the gateway's `path`
    called as the member (it finds the record within the member's merchant, or answers 404), `then` given its answer;
    back to `back` with the outcome by code."""
    if not _looks_like_id(record_id):
        return ctx.redirect(back, error=bad_id)
    try:
        answer = await ctx.api.post(path, body)
        if then is not None:
            await then(answer)
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error(exc))
    return ctx.redirect(back, done=done)


def _qr_data_uri(text: str) -> str:
    svg = segno.make(text, error="m").svg_inline(scale=4, dark="#000", light="#fff")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


# ---- sign in, links, sign out, my account (both consoles) ----------------------------------------------------
def _home(member: dict[str, Any]) -> str:
    return "/console/operator" if member.get("kind") == "operator" else "/console/merchant"


def _start(ctx: ConsoleContext, session: dict[str, Any]) -> None:
    expires = epoch(session["expires_at"]) if isinstance(session["expires_at"], str) else time.time() + 3600
    now = time.time()
    ctx.page.start_session(
        Session(
            user_id=session["member"]["staff_id"],
            token=session["token"],
            expires_epoch=expires,
            idle_until_epoch=min(now + ctx.page.settings.session_idle_seconds, expires),
            csrf=new_csrf(),
        )
    )


@shared.get("/sign-in", PUBLIC)
async def sign_in_form(ctx: Console) -> Response:
    reason = ctx.page.request.query_params.get("reason")
    csrf = ctx.page.pre_session_csrf()
    return ctx.render(
        "console/sign_in.html",
        title=ctx.page.gettext("Sign in"),
        pre_session_csrf=csrf,
        reason=reason if reason in ("expired", "no_session") else None,
        **_outcome(ctx),
    )


@shared.post("/sign-in", PUBLIC)
async def sign_in(ctx: Console) -> Response:
    api = ctx.api_as_web()
    try:
        session = await api.sign_in(ctx.form.get("email", "")[:254], ctx.form.get("password", "")[:256])
    except GatewayProblem as exc:
        if exc.code == "console_totp_required":
            return ctx.render(
                "console/sign_in_code.html",
                title=ctx.page.gettext("Sign in"),
                pre_session_csrf=ctx.page.pre_session_csrf(),
                ticket=exc.body.get("ticket", ""),
            )
        return _sign_in_failed(ctx, exc)
    _start(ctx, session)
    return ctx.redirect(_home(session["member"]), done="signed_in")


@shared.post("/sign-in/code", PUBLIC)
async def sign_in_code(ctx: Console) -> Response:
    try:
        session = await ctx.api_as_web().second_factor(ctx.form.get("ticket", "")[:300], ctx.form.get("code", "")[:20])
    except GatewayProblem as exc:
        return _sign_in_failed(ctx, exc)
    _start(ctx, session)
    return ctx.redirect(_home(session["member"]), done="signed_in")


def _sign_in_failed(ctx: ConsoleContext, exc: GatewayProblem) -> Response:
    failure = {"console_account_locked": "locked", "rate_limited": "rate_limited"}.get(exc.code, "failed")
    status = {"locked": 423, "rate_limited": 429}.get(failure, 401)
    return ctx.render(
        "console/sign_in.html",
        status,
        title=ctx.page.gettext("Sign in"),
        pre_session_csrf=ctx.page.pre_session_csrf(),
        failure=failure,
    )


async def _link_page(ctx: ConsoleContext, purpose: str, token: str, failure: str | None = None) -> Response:
    try:
        details = await ctx.api_as_web().inspect_link(token, purpose)
    except GatewayProblem:
        return ctx.render(
            "console/link.html", 401, title=ctx.page.gettext("Set your password"), invalid=True, purpose=purpose
        )
    qr = _qr_data_uri(details["otpauth_uri"]) if details.get("otpauth_uri") else None
    return ctx.render(
        "console/link.html",
        422 if failure else 200,
        title=ctx.page.gettext("Set your password"),
        details=details,
        qr=qr,
        token=token,
        purpose=purpose,
        failure=failure,
        pre_session_csrf=ctx.page.pre_session_csrf(),
    )


async def _use_link(ctx: ConsoleContext, purpose: str) -> Response:
    token = ctx.form.get("token", "")[:300]
    if ctx.form.get("password", "") != ctx.form.get("password_again", ""):
        return await _link_page(ctx, purpose, token, "mismatch")
    try:
        result = await ctx.api_as_web().redeem_link(
            token,
            purpose,
            password=ctx.form.get("password", "")[:256],
            name=ctx.form.get("name") or None,
            totp_code=ctx.form.get("totp_code") or None,
        )
    except GatewayProblem as exc:
        reason = {"console_password_rejected": "weak", "console_totp_invalid": "code"}.get(exc.code, "invalid")
        return await _link_page(ctx, purpose, token, reason)
    if result.get("session") is None:
        return ctx.redirect("/console/sign-in", done="password_set")
    _start(ctx, result["session"])
    if result.get("recovery_codes"):
        return ctx.render(
            "console/recovery_codes.html",
            title=ctx.page.gettext("Recovery codes"),
            codes=result["recovery_codes"],
            next=_home(result["session"]["member"]),
        )
    return ctx.redirect(_home(result["session"]["member"]), done="welcome")


@shared.get("/invitation", PUBLIC)
async def invitation(ctx: Console, token: Annotated[str, Query(max_length=300)] = "") -> Response:
    return await _link_page(ctx, "invitation", token)


@shared.post("/invitation", PUBLIC)
async def accept_invitation(ctx: Console) -> Response:
    return await _use_link(ctx, "invitation")


@shared.get("/password-reset", PUBLIC)
async def password_reset(ctx: Console, token: Annotated[str, Query(max_length=300)] = "") -> Response:
    return await _link_page(ctx, "password_reset", token)


@shared.post("/password-reset", PUBLIC)
async def use_password_reset(ctx: Console) -> Response:
    return await _use_link(ctx, "password_reset")


@shared.post("/sign-out", SIGNED_IN)
async def sign_out(ctx: Console) -> Response:
    try:
        await ctx.api.post("/v1/console/me/sign-out", {"everywhere": ctx.form.get("everywhere") == "1"})
    except (GatewayProblem, GatewayUnavailable):
        log.warning("console sign-out not confirmed by the gateway; the cookie goes anyway")
    ctx.page.end_session()
    return ctx.redirect("/console/sign-in", done="signed_out")


@shared.get("/account", SIGNED_IN)
async def account(ctx: Console) -> Response:
    return ctx.render("console/account.html", title=ctx.page.gettext("My account"), nav=_nav_of(ctx), **_outcome(ctx))


def _nav_of(ctx: ConsoleContext) -> list[dict[str, str | bool]]:
    return _nav(ctx, "/account") if ctx.member.get("kind") == "merchant" else []


@shared.post("/account/totp", SIGNED_IN)
async def begin_totp(ctx: Console) -> Response:
    enrolment = await ctx.api.post("/v1/console/me/totp")
    return ctx.render(
        "console/account.html",
        title=ctx.page.gettext("My account"),
        nav=_nav_of(ctx),
        enrolment=enrolment,
        qr=_qr_data_uri(enrolment["otpauth_uri"]),
    )


@shared.post("/account/totp/confirm", SIGNED_IN)
async def confirm_totp(ctx: Console) -> Response:
    try:
        result = await ctx.api.post("/v1/console/me/totp/confirmation", {"code": ctx.form.get("code", "")[:20]})
    except GatewayProblem as exc:
        return ctx.redirect("/console/account", error=_error(exc))
    return ctx.render(
        "console/recovery_codes.html",
        title=ctx.page.gettext("Recovery codes"),
        codes=result["recovery_codes"],
        next="/console/account",
    )


# ---- dashboard ---------------------------------------------------------------------------------------------
@routes.get("", "dashboard.read")
async def dashboard(ctx: Console, mode: Annotated[str, Query(max_length=4)] = "live") -> Response:
    """Today / 7 / 30 China days from the cashier's aggregates (counted and summed in SQL, one call): exact for
    any number of payments, nothing read one by one. Live payments, or test ones when asked (a console session has
    no key mode, and test money is not money: the two are never added up)."""
    mode = mode if mode in ("live", "test") else "live"
    today = datetime.now(CHINA).date()
    since = datetime(today.year, today.month, today.day, tzinfo=CHINA) - timedelta(days=DASHBOARD_DAYS - 1)
    answer = await ctx.api.get(
        "/v1/payments/aggregates", created_from=since.isoformat(), livemode="true" if mode == "live" else "false"
    )
    figures = dashboard_figures(answer.get("data", []), today=today)
    return _show(
        ctx,
        "merchant_dashboard.html",
        "",
        ctx.page.gettext("Dashboard"),
        figures=figures,
        mode=mode,
        chart=daily_chart(figures["daily"]),
        channel_chart=channel_chart(figures["windows"][2]),
    )


def dashboard_figures(rows: list[dict[str, Any]], *, today: date) -> dict[str, Any]:
    """Today / 7 / 30 days from aggregate rows ({day, channel, status, count, amount_minor, refunded_minor,
    platform_fee_minor}): volume (succeeded, minor units), count, success rate (of payments that ended, per mille),
    refunded, fees charged; by channel; and the daily succeeded volume for the chart. Integer arithmetic only."""
    windows = []
    for days, key in ((1, "today"), (7, "7d"), (30, "30d")):
        since = today - timedelta(days=days - 1)
        chosen = [r for r in rows if date.fromisoformat(str(r["day"])) >= since]
        by_channel: dict[str, dict[str, int]] = defaultdict(
            lambda: {"volume_minor": 0, "count": 0, "succeeded": 0, "refunded_minor": 0}
        )
        for r in chosen:
            row = by_channel[r.get("channel") or "-"]
            row["count"] += r["count"]
            if r["status"] == "succeeded":
                row["volume_minor"] += r["amount_minor"]
                row["succeeded"] += r["count"]
            row["refunded_minor"] += r["refunded_minor"]
        ended = sum(r["count"] for r in chosen if r["status"] in ("succeeded", "failed", "closed"))
        succeeded = [r for r in chosen if r["status"] == "succeeded"]
        windows.append(
            {
                "key": key,
                "count": sum(r["count"] for r in chosen),
                "volume_minor": sum(r["amount_minor"] for r in succeeded),
                "refunded_minor": sum(r["refunded_minor"] for r in chosen),
                "fee_minor": sum(r["platform_fee_minor"] for r in succeeded),
                "success_permille": (1000 * sum(r["count"] for r in succeeded) // ended) if ended else None,
                "by_channel": dict(sorted(by_channel.items())),
            }
        )
    daily: dict[date, int] = {today - timedelta(days=i): 0 for i in range(DASHBOARD_DAYS)}
    for r in rows:
        day = date.fromisoformat(str(r["day"]))
        if r["status"] == "succeeded" and day in daily:
            daily[day] += r["amount_minor"]
    return {"windows": windows, "daily": sorted(daily.items())}


def daily_chart(daily: list[tuple[date, int]]) -> dict[str, Any]:
    """Bars of an SVG drawn on the server: the coordinates only (the template draws them, the table has the numbers)."""
    width, height, gap = 600, 160, 2
    top = max((v for _, v in daily), default=0) or 1
    bar = (width - gap * len(daily)) // max(len(daily), 1)
    bars = [
        {
            "x": i * (bar + gap),
            "y": height - (v * height // top),
            "w": bar,
            "h": v * height // top,
            "day": d.isoformat(),
            "value": v,
        }
        for i, (d, v) in enumerate(daily)
    ]
    return {"width": width, "height": height, "bars": bars, "top_minor": top}


def channel_chart(window: dict[str, Any]) -> dict[str, Any]:
    width, row = 600, 28
    rows = list(window["by_channel"].items())
    top = max((r["volume_minor"] for _, r in rows), default=0) or 1
    bars = [
        {"y": i * row, "w": max(r["volume_minor"] * (width - 160) // top, 1), "channel": ch, "value": r["volume_minor"]}
        for i, (ch, r) in enumerate(rows)
    ]
    return {"width": width, "height": max(len(rows), 1) * row, "bars": bars}


# ---- payments ---------------------------------------------------------------------------------------------
@routes.get("/payments", "payments.read")
async def payments(
    ctx: Console,
    order_no: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    channel: Annotated[str, Query(max_length=16)] = "",
    from_text: Annotated[str, Query(alias="from", max_length=10)] = "",
    to_text: Annotated[str, Query(alias="to", max_length=10)] = "",
    amount: Amount = "",
    amount_min: Amount = "",
    amount_max: Amount = "",
    cursor: Cursor = None,
) -> Response:
    """By order no. (one exact lookup), or filtered by status, channel, dates and amount (exact, or a range; typed
    in yuan, asked in minor units), newest first, a page at a time. An amount that is not one is said so, and
    nothing is searched (an unfiltered page would look like an answer)."""
    date_from, date_to = _day(from_text), _day(to_text)
    filters: dict[str, Any] = {
        "order_no": order_no.strip(),
        "status": status if status in STATUSES else "",
        "channel": channel if channel in CHANNELS else "",
        "from": date_from,
        "to": date_to,
        "amount": amount.strip(),
        "amount_min": amount_min.strip(),
        "amount_max": amount_max.strip(),
    }
    show: dict[str, Any] = {"filters": filters, "statuses": STATUSES, "channels": CHANNELS}
    by_amount = amount_query(filters["amount"], filters["amount_min"], filters["amount_max"])
    if by_amount is None:
        return _show(
            ctx,
            "merchant_payments.html",
            "/payments",
            ctx.page.gettext("Payments"),
            422,
            items=[],
            next_query=None,
            error="amount_invalid",
            **show,
        )
    try:
        if filters["order_no"]:
            page = await ctx.api.get("/v1/payments", merchant_order_no=filters["order_no"])
        else:
            page = await ctx.api.get(
                "/v1/payments",
                limit=PAGE_SIZE,
                cursor=cursor,
                status=filters["status"],
                channel=filters["channel"],
                created_from=_day_start(date_from),
                created_to=_day_start(date_to + timedelta(days=1)) if date_to else None,
                **by_amount,
            )
    except GatewayProblem as exc:
        if exc.status not in (404, 422):
            raise
        page = {"data": [], "next_cursor": None}
    next_cursor = page.get("next_cursor")
    kept = {k: str(v) for k, v in filters.items() if v and k != "order_no"}
    next_query = urlencode({**kept, "cursor": next_cursor}) if next_cursor else None
    return _show(
        ctx,
        "merchant_payments.html",
        "/payments",
        ctx.page.gettext("Payments"),
        items=page.get("data", []),
        next_query=next_query,
        **show,
    )


def amount_query(exact: str, low: str, high: str) -> dict[str, int] | None:
    """The cashier's amount filter from the form's yuan fields (each empty = not asked): an exact amount, or a range
    open at either end; None when a field is not an amount, or the range is empty (low above high)."""
    parsed = {
        key: parse_amount_minor(text)
        for key, text in (("amount_minor", exact), ("amount_minor_gte", low), ("amount_minor_lte", high))
        if text
    }
    if any(v is None for v in parsed.values()):
        return None
    query = {k: v for k, v in parsed.items() if v is not None}
    if "amount_minor" in query:
        return {"amount_minor": query["amount_minor"]}  # an exact amount: a range beside it says nothing more
    if query.get("amount_minor_gte", 0) > query.get("amount_minor_lte", 10**15):
        return None
    return query


def _day(text: str) -> date | None:
    """A date field as a form sends it: empty (no filter) or YYYY-MM-DD; anything else is no filter either."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _day_start(day: date | None) -> str | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat() if day else None


@routes.get("/payments/{payment_id}", "payments.read")
async def payment(ctx: Console, payment_id: str) -> Response:
    if not _looks_like_id(payment_id):
        return _show(ctx, "merchant_payment.html", "/payments", ctx.page.gettext("Payment"), 404, payment=None)
    try:
        detail = await ctx.api.get(f"/v1/payments/{payment_id}")
    except GatewayProblem as exc:
        if exc.status != 404:
            raise
        return _show(ctx, "merchant_payment.html", "/payments", ctx.page.gettext("Payment"), 404, payment=None)
    refunds = (await ctx.api.get(f"/v1/payments/{payment_id}/refunds", limit=100)).get("data", [])
    deliveries = (await ctx.api.get(f"/v1/payments/{payment_id}/webhook-deliveries", limit=100)).get("data", [])
    threshold = (await ctx.api.get("/v1/console/settings"))["refund_approval_threshold_minor"]
    return _show(
        ctx,
        "merchant_payment.html",
        "/payments",
        ctx.page.gettext("Payment"),
        payment=detail,
        timeline=payment_timeline(detail, refunds),
        refunds=refunds,
        deliveries=deliveries,
        threshold_minor=threshold,
        postings=await _postings(ctx, payment_id, refunds),
    )


async def _postings(ctx: ConsoleContext, payment_id: str, refunds: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """What the ledger posted for the payment and its refunds on the merchant's own accounts (the gateway keeps the
    other parties' lines); None when the ledger did not answer (the rest of the page still shows)."""
    refund_ids = [r["id"] for r in refunds if r.get("status") == "succeeded"][:20]
    try:
        answer = await ctx.api.call(
            "GET",
            f"/v1/console/payments/{payment_id}/postings",
            params={"refund_id": refund_ids} if refund_ids else None,
        )
    except (GatewayProblem, GatewayUnavailable) as exc:
        log.warning("payment postings not read", error=str(exc))
        return None
    lines: list[dict[str, Any]] = answer.get("data", [])
    return lines


def _looks_like_id(value: str) -> bool:
    return 3 < len(value) <= 64 and value.replace("_", "").isalnum() and value.isascii()


def payment_timeline(payment: dict[str, Any], refunds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The payment's life in time order: created, each channel attempt, the outcome, each refund."""
    events: list[dict[str, Any]] = [
        {"at": payment["created_at"], "kind": "created", "detail": payment["merchant_order_no"]}
    ]
    for a in payment.get("attempts", []):
        detail = " ".join(x for x in (a["channel"], a.get("channel_trade_no") or "", a.get("failure_code") or "") if x)
        events.append({"at": a["created_at"], "kind": f"attempt_{a['status']}", "detail": detail})
    for key in ("succeeded_at", "failed_at", "closed_at"):
        if payment.get(key):
            events.append(
                {"at": payment[key], "kind": key.removesuffix("_at"), "detail": payment.get("channel_trade_no") or ""}
            )
    for r in refunds:
        events.append(
            {
                "at": r["created_at"],
                "kind": f"refund_{r['status']}",
                "detail": r["id"],
                "amount_minor": r["amount_minor"],
            }
        )
    return sorted(events, key=lambda e: str(e["at"]))


@routes.post("/payments/{payment_id}/webhook-deliveries/{delivery_id}/resend", "webhooks.resend")
async def resend_delivery(ctx: Console, payment_id: str, delivery_id: str) -> Response:
    """Queue one of the payment's webhook deliveries again from the start of its schedule."""
    back = f"/console/merchant/payments/{payment_id}" if _looks_like_id(payment_id) else "/console/merchant/payments"
    return await _resend(ctx, back, delivery_id, "payment_id", payment_id)


async def _resend(ctx: ConsoleContext, back: str, delivery_id: str, owner_field: str, owner_id: str) -> Response:
    """The cashier's `POST /v1/webhook-deliveries/{id}/resend` (scoped to the member's merchant), audited with the
    delivery's state before and after. A delivery not of the page's payment or endpoint (`owner_field` ≠ `owner_id`)
    is refused here, so the page's button does what it shows; a double submit queues it once."""
    if not (_looks_like_id(owner_id) and _looks_like_id(delivery_id)):
        return ctx.redirect(back, error="invalid")
    fields = ("status", "attempt_count", "last_status_code", "next_attempt_at")
    try:
        before = await ctx.api.get(f"/v1/webhook-deliveries/{delivery_id}")
        if before.get(owner_field) != owner_id:
            return ctx.redirect(back, error="invalid")
        key = f"console-resend-{_request_id(ctx.form)}-{delivery_id}"
        after = await ctx.api.post(f"/v1/webhook-deliveries/{delivery_id}/resend", idempotency_key=key)
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error(exc))
    await ctx.api.audit(
        "webhook.resent", delivery_id, {k: before.get(k) for k in fields}, {k: after.get(k) for k in fields}
    )
    return ctx.redirect(back, done="resent")


@routes.post("/payments/{payment_id}/refunds", "refunds.create")
async def request_refund(ctx: Console, payment_id: str) -> Response:
    """A refund request at the gateway (maker-checker above the threshold); approved at once below it, then made."""
    back = f"/console/merchant/payments/{payment_id}" if _looks_like_id(payment_id) else "/console/merchant/payments"
    amount = parse_amount_minor(ctx.form.get("amount", ""))
    if amount is None or not _looks_like_id(payment_id):
        return ctx.redirect(back, error="amount_invalid")
    try:
        detail = await ctx.api.get(f"/v1/payments/{payment_id}")  # the member's own merchant's payment, or 404
        if amount > detail["refundable_minor"]:
            return ctx.redirect(back, error="amount_invalid")
        request = await ctx.api.post(
            "/v1/console/refund-requests",
            {
                "payment_id": payment_id,
                "amount_minor": amount,
                "currency": detail["currency"],
                "reason": ctx.form.get("reason", "")[:200],
            },
        )
        if request["status"] == "approved":
            await _execute(ctx, request)
            return ctx.redirect(back, done="refund_made")
    except GatewayProblem as exc:
        return ctx.redirect(back, error=_error(exc))
    return ctx.redirect(back, done="refund_requested")


async def _execute(ctx: ConsoleContext, request: dict[str, Any]) -> None:
    """The approved request's refund at the cashier, idempotent by the request id; then marked executed (audited)."""
    refund = await ctx.api.post(
        f"/v1/payments/{request['payment_id']}/refunds",
        {"amount_minor": request["amount_minor"], "reason": request["reason"] or None},
        idempotency_key=f"console-{request['request_id']}",
    )
    await ctx.api.post(f"/v1/console/refund-requests/{request['request_id']}/execution", {"refund_id": refund["id"]})


@routes.get("/refunds", "payments.read")
async def refunds(ctx: Console, cursor: Cursor = None) -> Response:
    page = await ctx.api.get("/v1/console/refund-requests", limit=PAGE_SIZE, cursor=cursor)
    return _show(
        ctx,
        "merchant_refunds.html",
        "/refunds",
        ctx.page.gettext("Refunds"),
        items=page["data"],
        next_cursor=page.get("next_cursor"),
    )


@routes.post("/refunds/{request_id}/approve", "refunds.approve")
async def approve_refund(ctx: Console, request_id: str) -> Response:
    async def make(request: dict[str, Any]) -> None:
        await _execute(ctx, request)

    path = f"/v1/console/refund-requests/{request_id}/approval"
    return await _act(ctx, REFUNDS, request_id, path, done="approved", bad_id="state", then=make)


@routes.post("/refunds/{request_id}/reject", "refunds.approve")
async def reject_refund(ctx: Console, request_id: str) -> Response:
    path = f"/v1/console/refund-requests/{request_id}/rejection"
    return await _act(ctx, REFUNDS, request_id, path, done="rejected", bad_id="state")


@routes.post("/refunds/{request_id}/execute", "refunds.create")
async def execute_refund(ctx: Console, request_id: str) -> Response:
    """An approved request whose refund did not go through (the cashier refused or did not answer when it was
    approved): made now, with the same idempotency key (the request id), so the payer is refunded at most once."""
    if not _looks_like_id(request_id):
        return ctx.redirect(REFUNDS, error="state")
    try:
        request = await ctx.api.get(f"/v1/console/refund-requests/{request_id}")
        if request["status"] != "approved":
            return ctx.redirect(REFUNDS, error="state")
        await _execute(ctx, request)
    except GatewayProblem as exc:
        return ctx.redirect(REFUNDS, error=_error(exc))
    return ctx.redirect(REFUNDS, done="refund_made")


# ---- statements and payouts ---------------------------------------------------------------------------------
@routes.get("/statements", "statements.read")
async def statements(ctx: Console) -> Response:
    statement = await ctx.api.get("/v1/statements/current")
    return _show(ctx, "merchant_statements.html", "/statements", ctx.page.gettext("Statements"), statement=statement)


@routes.get("/statements.csv", "statements.read")
async def statements_csv(
    ctx: Console,
    from_text: Annotated[str, Query(alias="from", max_length=10)] = "",
    to_text: Annotated[str, Query(alias="to", max_length=10)] = "",
) -> Response:
    """The API's CSV byte for byte (`GET /v1/statements/transactions.csv`), as the member's merchant."""
    date_from, date_to = _day(from_text), _day(to_text)
    params = {k: v.isoformat() for k, v in (("from", date_from), ("to", date_to)) if v is not None}
    body = await ctx.api.csv("/v1/statements/transactions.csv", params)
    name = f"{ctx.merchant_id}-transactions.csv"
    response = Response(
        body, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
    ctx.page.finish(response)
    return response


@routes.get("/payouts", "payouts.read")
async def payouts(ctx: Console, cursor: Cursor = None) -> Response:
    page = await ctx.api.get("/v1/payouts", limit=PAGE_SIZE, cursor=cursor)
    statement = await ctx.api.get("/v1/statements/current")
    settled = (statement.get("balances") or {}).get("CNY", {}).get("settled_minor", 0)
    items = page.get("data", page.get("payouts", []))  # the list envelope ({data, has_more, next_cursor})
    return _show(
        ctx,
        "merchant_payouts.html",
        "/payouts",
        ctx.page.gettext("Payouts"),
        items=items,
        next_cursor=page.get("next_cursor"),
        settled_minor=settled,
    )


@routes.post("/payouts", "payouts.create")
async def request_payout(ctx: Console) -> Response:
    """Within the settled balance: the settlement service refuses more (422), whatever this page showed."""
    amount = parse_amount_minor(ctx.form.get("amount", ""))
    account_no, account_name = ctx.form.get("account_no", "").strip(), ctx.form.get("account_name", "").strip()
    if amount is None or not (4 <= len(account_no) <= 64 and account_no.replace("-", "").isalnum()) or not account_name:
        return ctx.redirect("/console/merchant/payouts", error="amount_invalid" if amount is None else "invalid")
    rid = _request_id(ctx.form)
    body = {
        "amount_minor": amount,
        "currency": "CNY",
        "account_no": account_no,
        "account_name": account_name[:128],
        "idempotency_key": f"console-{rid}",
        "rail": "bank",
    }
    try:
        payout = await ctx.api.post("/v1/payouts", body, idempotency_key=f"console-po-{rid}")
    except GatewayProblem as exc:
        return ctx.redirect("/console/merchant/payouts", error=_error(exc))
    after = {k: payout.get(k) for k in ("payout_id", "amount_minor", "currency", "status", "rail")}
    await ctx.api.audit("payout.requested", str(payout.get("payout_id")), None, after)
    # At or above the platform's threshold settlement holds it for an operator's approval (maker-checker).
    held = payout.get("status") == "pending_approval"
    return ctx.redirect("/console/merchant/payouts", done="payout_held" if held else "payout_requested")


# ---- self-service reconciliation (对账) ----------------------------------------------------------------------
@routes.get("/reconciliation", "statements.read")
async def reconciliation(ctx: Console, day_text: Annotated[str, Query(alias="day", max_length=10)] = "") -> Response:
    """One China business day: the merchant's succeeded payments at Juhe (the cashier) against its statement (the
    settlement service's record, the rows of the statement CSV for that bill day), counts and totals by channel and
    every payment that differs. Yesterday unless a day is asked (a day's statement is complete the day after)."""
    day = _day(day_text) or datetime.now(CHINA).date() - timedelta(days=1)
    title = ctx.page.gettext("Reconciliation")
    rows = list(
        csv.DictReader(
            io.StringIO(
                (
                    await ctx.api.csv(
                        "/v1/statements/transactions.csv", {"from": day.isoformat(), "to": day.isoformat()}
                    )
                ).decode()
            )
        )
    )
    payments, partial = await _succeeded_on(ctx, day)
    found = {p["id"] for p in payments}
    for row in [r for r in rows if r["status"] == "succeeded" and r["payment_id"] not in found][:RECONCILE_LOOKUPS_MAX]:
        try:  # a payment created before the day read (a late success): asked for by its id
            payments.append(await ctx.api.get(f"/v1/payments/{row['payment_id']}"))
        except GatewayProblem as exc:
            if exc.status != 404:
                raise
    return _show(
        ctx,
        "merchant_reconciliation.html",
        "/reconciliation",
        title,
        day=day.isoformat(),
        result=reconcile_day(day, payments, rows),
        partial=partial,
    )


async def _succeeded_on(ctx: ConsoleContext, day: date) -> tuple[list[dict[str, Any]], bool]:
    """The cashier's payments that succeeded on the China `day`: those created from the day before to its end,
    by cursor pages, bounded (True: more than the bound, the page says the figures are partial)."""
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA)
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await ctx.api.get(
            "/v1/payments",
            status="succeeded",
            limit=100,
            cursor=cursor,
            created_from=(start - timedelta(days=1)).isoformat(),
            created_to=(start + timedelta(days=1)).isoformat(),
        )
        items.extend(page.get("data", []))
        cursor = page.get("next_cursor")
        if not cursor or len(items) >= RECONCILE_PAYMENTS_MAX:
            return items, bool(cursor)


def _china_day(moment: str | None) -> date | None:
    return datetime.fromisoformat(moment).astimezone(CHINA).date() if moment else None


def reconcile_day(day: date, payments: list[dict[str, Any]], rows: list[dict[str, str]]) -> dict[str, Any]:
    """Juhe's succeeded payments of `day` (cashier views) against the statement's rows of that bill day (CSV dicts):
    per channel and currency the count and total on each side, and each payment that is on one side only or whose
    amount or channel differs. Integer minor units throughout."""
    ours = {p["id"]: p for p in payments if p.get("status") == "succeeded" and _china_day(p.get("succeeded_at")) == day}
    listed = {r["payment_id"]: r for r in rows}
    stated = {pid: r for pid, r in listed.items() if r.get("status") == "succeeded"}
    zero = {"count": 0, "total_minor": 0, "stated_count": 0, "stated_total_minor": 0, "fee_minor": 0}
    channels: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict(zero))
    for p in ours.values():
        row = channels[(p.get("channel") or "-", p["currency"])]
        row["count"] += 1
        row["total_minor"] += int(p["amount_minor"])
    for r in stated.values():
        row = channels[(r["channel"] or "-", r["currency"])]
        row["stated_count"] += 1
        row["stated_total_minor"] += int(r["amount_minor"])
        row["fee_minor"] += int(r["platform_fee_minor"] or 0)
    differences: list[dict[str, Any]] = []
    disagree = 0  # on both sides, but not the same
    for pid in sorted(ours.keys() | stated.keys()):
        mine, theirs = ours.get(pid), stated.get(pid)
        kind = _difference(mine, theirs)
        disagree += kind is not None and mine is not None and theirs is not None
        if kind is None:
            continue
        known = listed.get(pid) or {}
        differences.append(
            {
                "payment_id": pid,
                "kind": kind,
                "merchant_order_no": (mine or {}).get("merchant_order_no") or known.get("merchant_order_no"),
                "currency": (mine or {}).get("currency") or known.get("currency") or "CNY",
                "amount_minor": int(mine["amount_minor"]) if mine else None,
                "stated_amount_minor": int(theirs["amount_minor"]) if theirs else None,
                "stated_status": known.get("status") or None,
            }
        )
    matched = len(ours.keys() & stated.keys()) - disagree
    rows_out = [{"channel": ch, "currency": cur, **v} for (ch, cur), v in sorted(channels.items())]
    return {"channels": rows_out, "differences": differences, "matched": matched}


def _difference(payment: dict[str, Any] | None, row: dict[str, str] | None) -> str | None:
    """How one payment differs between Juhe and the statement, as a code the page names; None: it agrees."""
    if row is None:
        return "not_in_statement"
    if payment is None:
        return "not_at_juhe"
    if int(row["amount_minor"]) != int(payment["amount_minor"]):
        return "amount_differs"
    if (row["channel"] or None) != payment.get("channel"):
        return "channel_differs"
    return None


# ---- API keys ------------------------------------------------------------------------------------------------
@routes.get("/api-keys", "api_keys.read")
async def api_keys(ctx: Console) -> Response:
    keys = (await ctx.api.get("/v1/console/api-keys"))["data"]
    return _show(ctx, "merchant_api_keys.html", "/api-keys", ctx.page.gettext("API keys"), keys=keys, overlaps=OVERLAPS)


async def _keys_with_secret(ctx: ConsoleContext, secret: dict[str, Any]) -> Response:
    """The secret is shown on this answer only (no redirect, no-store): it is never stored or shown again."""
    keys = (await ctx.api.get("/v1/console/api-keys"))["data"]
    return _show(
        ctx,
        "merchant_api_keys.html",
        "/api-keys",
        ctx.page.gettext("API keys"),
        keys=keys,
        overlaps=OVERLAPS,
        secret=secret,
    )


@routes.post("/api-keys", "api_keys.manage")
async def create_api_key(ctx: Console) -> Response:
    return await _keys_with_secret(ctx, await ctx.api.post("/v1/console/api-keys"))


@routes.post("/api-keys/{key_id}/rotate", "api_keys.manage")
async def rotate_api_key(ctx: Console, key_id: str) -> Response:
    overlap = ctx.form.get("overlap_seconds", "86400")
    seconds = int(overlap) if overlap.isdigit() and int(overlap) in OVERLAPS else 86400
    if not _looks_like_id(key_id):
        return ctx.redirect("/console/merchant/api-keys", error="invalid")
    try:
        rotated = await ctx.api.post(f"/v1/console/api-keys/{key_id}/rotate", {"overlap_seconds": seconds})
    except GatewayProblem as exc:
        return ctx.redirect("/console/merchant/api-keys", error=_error(exc))
    return await _keys_with_secret(ctx, rotated["new_key"])


@routes.post("/api-keys/{key_id}/revoke", "api_keys.manage")
async def revoke_api_key(ctx: Console, key_id: str) -> Response:
    return await _act(ctx, API_KEYS, key_id, f"/v1/console/api-keys/{key_id}/revoke", done="key_revoked")


# ---- staff and roles -------------------------------------------------------------------------------------------
@routes.get("/staff", "staff.read")
async def staff(ctx: Console) -> Response:
    members = (await ctx.api.get("/v1/console/staff"))["data"]
    return _show(ctx, "merchant_staff.html", "/staff", ctx.page.gettext("Staff"), members=members, roles=MERCHANT_ROLES)


@routes.post("/staff/invitations", "staff.manage")
async def invite(ctx: Console) -> Response:
    role = ctx.form.get("role", "")
    body = {"email": ctx.form.get("email", "").strip()[:254], "role": role, "name": ctx.form.get("name", "")[:200]}
    try:
        invited = await ctx.api.post("/v1/console/staff/invitations", body)
    except GatewayProblem as exc:
        return ctx.redirect("/console/merchant/staff", error=_error(exc))
    members = (await ctx.api.get("/v1/console/staff"))["data"]
    # The one-time link is shown on this answer only, to be handed to the person invited.
    return _show(
        ctx,
        "merchant_staff.html",
        "/staff",
        ctx.page.gettext("Staff"),
        members=members,
        roles=MERCHANT_ROLES,
        invited=invited,
        done="invited",
    )


@routes.post("/staff/{staff_id}/role", "staff.manage")
async def change_role(ctx: Console, staff_id: str) -> Response:
    role = {"role": ctx.form.get("role", "")}
    return await _act(ctx, STAFF, staff_id, f"/v1/console/staff/{staff_id}/role", role, done="role_changed")


@routes.post("/staff/{staff_id}/remove", "staff.manage")
async def remove(ctx: Console, staff_id: str) -> Response:
    return await _act(ctx, STAFF, staff_id, f"/v1/console/staff/{staff_id}/removal", done="removed")


# ---- audit log and settings ------------------------------------------------------------------------------------
@routes.get("/audit", "audit.read")
async def audit(ctx: Console, cursor: Cursor = None) -> Response:
    page = await ctx.api.get("/v1/console/audit", limit=50, cursor=cursor)
    return _show(
        ctx,
        "merchant_audit.html",
        "/audit",
        ctx.page.gettext("Audit log"),
        items=audit_entries(page["data"]),
        next_cursor=page.get("next_cursor"),
    )


@routes.get("/settings", "settings.manage")
async def settings(ctx: Console) -> Response:
    values = await ctx.api.get("/v1/console/settings")
    return _show(ctx, "merchant_settings.html", "/settings", ctx.page.gettext("Settings"), values=values)


@routes.post("/settings", "settings.manage")
async def save_settings(ctx: Console) -> Response:
    amount = parse_amount_minor(ctx.form.get("threshold", ""))
    if amount is None:
        return ctx.redirect("/console/merchant/settings", error="amount_invalid")
    try:
        await ctx.api.call("PUT", "/v1/console/settings", json={"refund_approval_threshold_minor": amount})
    except GatewayProblem as exc:
        return ctx.redirect("/console/merchant/settings", error=_error(exc))
    return ctx.redirect("/console/merchant/settings", done="settings_saved")


# ---- webhooks: the merchant's endpoints --------------------------------------------------------------------------
WEBHOOKS = "/console/merchant/webhooks"
# The cashier's event types (services/cashier/domain/webhook_endpoints.py EVENT_TYPES; the web process does not import
# a service's code): an endpoint receives the ones ticked, or every type, later ones included ("*").
EVENT_TYPES = ("payment.succeeded", "payment.failed", "payment.closed", "refund.succeeded", "refund.failed")
ENDPOINT_FIELDS = ("url", "enabled", "enabled_events", "previous_secret_expires_at", "livemode")


Mode = Annotated[str, Query(max_length=4)]


def console_mode(ctx: ConsoleContext, chosen: str | None) -> str:
    """The mode a page makes and lists objects in (its live / test switch): the one chosen, else the cashier's own
    default (test on a development platform, live in production), so a page left alone behaves as the API does."""
    if chosen in ("live", "test"):
        return chosen
    return "live" if ctx.page.settings.env == "prod" else "test"


def _key(ctx: ConsoleContext, what: str) -> str:
    """The Idempotency-Key of a form's write: its one-time request id, so a double submit does it once."""
    return f"console-{what}-{_request_id(ctx.form)}"


async def _endpoints_page(ctx: ConsoleContext, mode: str, status_code: int = 200, **values: Any) -> Response:
    """The endpoints of one mode (an endpoint gets its own mode's events only) and the form adding one in it."""
    endpoints = (await ctx.api.in_mode(mode).get("/v1/webhook-endpoints")).get("data", [])
    return _show(
        ctx,
        "merchant_webhooks.html",
        "/webhooks",
        ctx.page.gettext("Webhooks"),
        status_code,
        endpoints=endpoints,
        event_types=EVENT_TYPES,
        overlaps=OVERLAPS,
        mode=mode,
        **values,
    )


@routes.get("/webhooks", "webhooks.manage")
async def webhooks(ctx: Console, mode: Mode = "") -> Response:
    return await _endpoints_page(ctx, console_mode(ctx, mode))


@routes.post("/webhooks", "webhooks.manage")
async def create_endpoint(ctx: Console) -> Response:
    """A new endpoint in the mode of the page it was added on; its signing secret is shown on this answer only
    (never stored here, never shown again)."""
    mode = console_mode(ctx, ctx.form.get("mode"))
    url = ctx.form.get("url", "").strip()[:2000]
    events = ["*"] if ctx.form.get("all_events") == "1" else [e for e in EVENT_TYPES if ctx.form.get(f"event_{e}")]
    if not url.startswith(("https://", "http://")) or not events:
        return ctx.redirect(WEBHOOKS, error="invalid", mode=mode)
    body = {"url": url, "enabled_events": events, "description": ctx.form.get("description", "").strip()[:500] or None}
    try:
        created = await ctx.api.in_mode(mode).call(
            "POST", "/v1/webhook-endpoints", json=body, idempotency_key=_key(ctx, "we")
        )
    except GatewayProblem as exc:
        return ctx.redirect(WEBHOOKS, error=_error(exc), mode=mode)
    await ctx.api.audit("webhook_endpoint.created", created["id"], None, _endpoint_record(created))
    return await _endpoints_page(ctx, mode, secret={"id": created["id"], "secret": created["secret"]}, done="created")


def _endpoint_record(endpoint: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of an endpoint: never its secret."""
    return {k: endpoint.get(k) for k in ENDPOINT_FIELDS}


async def _change_endpoint(
    ctx: ConsoleContext, endpoint_id: str, action: str, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any] | Response:
    """One write on one of the merchant's endpoints (the cashier finds it within the merchant, or 404), audited with
    the endpoint before and after; a Response when it was refused (back to the list of the page's mode with the
    reason)."""
    mode = console_mode(ctx, ctx.form.get("mode"))
    if not _looks_like_id(endpoint_id):
        return ctx.redirect(WEBHOOKS, error="invalid", mode=mode)
    try:
        before = await ctx.api.get(f"/v1/webhook-endpoints/{endpoint_id}")
        after = await ctx.api.call(method, path, json=body, idempotency_key=_key(ctx, f"we-{action}"))
    except GatewayProblem as exc:
        return ctx.redirect(WEBHOOKS, error=_error(exc), mode=mode)
    after = after if isinstance(after, dict) and after else {}
    await ctx.api.audit(
        f"webhook_endpoint.{action}", endpoint_id, _endpoint_record(before), _endpoint_record(after) if after else None
    )
    return after


async def _switch_endpoint(
    ctx: ConsoleContext, endpoint_id: str, action: str, method: str, body: dict[str, Any] | None = None
) -> Response:
    """Enable, disable or delete an endpoint, then back to the list of the page's mode saying what was done."""
    done = await _change_endpoint(ctx, endpoint_id, action, method, f"/v1/webhook-endpoints/{endpoint_id}", body)
    if isinstance(done, Response):
        return done
    return ctx.redirect(WEBHOOKS, done=action, mode=console_mode(ctx, ctx.form.get("mode")))


@routes.post("/webhooks/{endpoint_id}/enable", "webhooks.manage")
async def enable_endpoint(ctx: Console, endpoint_id: str) -> Response:
    return await _switch_endpoint(ctx, endpoint_id, "enabled", "PATCH", {"enabled": True})


@routes.post("/webhooks/{endpoint_id}/disable", "webhooks.manage")
async def disable_endpoint(ctx: Console, endpoint_id: str) -> Response:
    return await _switch_endpoint(ctx, endpoint_id, "disabled", "PATCH", {"enabled": False})


@routes.post("/webhooks/{endpoint_id}/delete", "webhooks.manage")
async def delete_endpoint(ctx: Console, endpoint_id: str) -> Response:
    return await _switch_endpoint(ctx, endpoint_id, "deleted", "DELETE")


@routes.post("/webhooks/{endpoint_id}/rotate", "webhooks.manage")
async def rotate_endpoint_secret(ctx: Console, endpoint_id: str) -> Response:
    """A new signing secret, shown once; the previous one keeps signing too (both `v1=` entries) for the overlap
    chosen, so the receiver can deploy the new one without missing an event."""
    overlap = ctx.form.get("overlap_seconds", "86400")
    seconds = int(overlap) if overlap.isdigit() and int(overlap) in OVERLAPS else 86400
    path = f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret"
    done = await _change_endpoint(ctx, endpoint_id, "secret_rotated", "POST", path, {"overlap_seconds": seconds})
    if isinstance(done, Response):
        return done
    mode = console_mode(ctx, ctx.form.get("mode"))
    return await _endpoints_page(ctx, mode, secret={"id": done["id"], "secret": done["secret"]}, done="rotated")


@routes.get("/webhooks/{endpoint_id}", "webhooks.manage")
async def endpoint_deliveries(
    ctx: Console,
    endpoint_id: str,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    delivery: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """One endpoint and its deliveries, newest first (cursor pages); with `?delivery=` that delivery's attempts."""
    title = ctx.page.gettext("Webhooks")
    if not _looks_like_id(endpoint_id):
        return _show(ctx, "merchant_endpoint.html", "/webhooks", title, 404, endpoint=None)
    try:
        endpoint = await ctx.api.get(f"/v1/webhook-endpoints/{endpoint_id}")
        page = await ctx.api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", limit=PAGE_SIZE, cursor=cursor)
        shown = (
            await ctx.api.get(f"/v1/webhook-deliveries/{delivery}") if delivery and _looks_like_id(delivery) else None
        )
    except GatewayProblem as exc:
        if exc.status != 404:
            raise
        return _show(ctx, "merchant_endpoint.html", "/webhooks", title, 404, endpoint=None)
    if shown is not None and shown.get("endpoint_id") != endpoint_id:
        shown = None  # a delivery of another endpoint is not shown on this one's page
    return _show(
        ctx,
        "merchant_endpoint.html",
        "/webhooks",
        title,
        endpoint=endpoint,
        items=page.get("data", []),
        next_cursor=page.get("next_cursor"),
        shown=shown,
    )


@routes.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend", "webhooks.resend")
async def resend_endpoint_delivery(ctx: Console, endpoint_id: str, delivery_id: str) -> Response:
    """Queue one of the endpoint's deliveries again from the start of its schedule."""
    back = f"{WEBHOOKS}/{endpoint_id}" if _looks_like_id(endpoint_id) else WEBHOOKS
    return await _resend(ctx, back, delivery_id, "endpoint_id", endpoint_id)


# ---- balances (the ledger's) -------------------------------------------------------------------------------------
@routes.get("/balances", "statements.read")
async def balances(ctx: Console, mode: Annotated[str, Query(max_length=4)] = "live") -> Response:
    """Pending (not settled yet), settled (available to pay out) and in transit (payouts instructed, not confirmed by
    the bank): the ledger's balances of the merchant's accounts, the books themselves, not a sum of a list. Of the
    live book, or the test one when asked: a console session has no key mode, and test money is never added to
    live money (the ledger's `livemode`)."""
    mode = mode if mode in ("live", "test") else "live"
    figures = await ctx.api.get(
        f"/v1/wallet/merchants/{ctx.merchant_id}/balances",
        currency="CNY",
        livemode="true" if mode == "live" else "false",
    )
    return _show(ctx, "merchant_balances.html", "/balances", ctx.page.gettext("Balances"), figures=figures, mode=mode)


# ---- payment links and their posters -----------------------------------------------------------------------------
LINKS = "/console/merchant/payment-links"
PAYER_FIELDS = ("plate_number", "student_id", "unit_number", "reference")


@routes.get("/payment-links", "payments.read")
async def payment_links(
    ctx: Console, cursor: Annotated[str | None, Query(pattern=r"^pl_[0-9a-f]{32}$")] = None, mode: Mode = ""
) -> Response:
    """The links of one mode (the switch; a test link is paid in the sandboxes only) and the form making one in it."""
    mode = console_mode(ctx, mode)
    page = await ctx.api.in_mode(mode).get("/v1/payment-links", limit=PAGE_SIZE, cursor=cursor)
    return _show(
        ctx,
        "merchant_payment_links.html",
        "/payment-links",
        ctx.page.gettext("Payment links"),
        items=page.get("data", []),
        next_cursor=page.get("next_cursor"),
        payer_fields=PAYER_FIELDS,
        mode=mode,
    )


def link_draft(form: dict[str, str], *, now: datetime) -> dict[str, Any] | None:
    """The cashier's `POST /v1/payment-links` body from the console's form, or None when a field is not valid: a fixed
    amount, or the payer's within optional bounds (yuan → minor units); single-use or not; an expiry (China time) in
    the future. Integer minor units only."""
    description = form.get("description", "").strip()[:256]
    if not description:
        return None
    body: dict[str, Any] = {
        "currency": "CNY",
        "description": description,
        "payer_fields": [f for f in PAYER_FIELDS if form.get(f"field_{f}")],
    }
    if form.get("amount_kind") == "fixed":
        amount = parse_amount_minor(form.get("amount", ""))
        if amount is None:
            return None
        body["amount_minor"] = amount
    else:
        for name, key in (("amount_min", "amount_min_minor"), ("amount_max", "amount_max_minor")):
            if form.get(name, "").strip():
                value = parse_amount_minor(form[name])
                if value is None:
                    return None
                body[key] = value
        if body.get("amount_min_minor", 1) > body.get("amount_max_minor", 10**15):
            return None
    if form.get("single_use") == "1":
        body["max_uses"] = 1
    if form.get("expires", "").strip():
        try:
            expires = datetime.fromisoformat(form["expires"].strip()).replace(tzinfo=CHINA)
        except ValueError:
            return None
        if expires <= now:
            return None
        body["expires_at"] = expires.isoformat()
    return body


@routes.post("/payment-links", "payment_links.manage")
async def create_payment_link(ctx: Console) -> Response:
    """A link in the mode of the page it was made on (the gateway forwards that mode as a key's)."""
    mode = console_mode(ctx, ctx.form.get("mode"))
    body = link_draft(ctx.form, now=datetime.now(CHINA))
    if body is None:
        return ctx.redirect(LINKS, error="invalid", mode=mode)
    try:
        link = await ctx.api.in_mode(mode).call("POST", "/v1/payment-links", json=body, idempotency_key=_key(ctx, "pl"))
    except GatewayProblem as exc:
        return ctx.redirect(LINKS, error=_error(exc), mode=mode)
    record = (
        "amount_minor",
        "amount_min_minor",
        "amount_max_minor",
        "description",
        "max_uses",
        "expires_at",
        "livemode",
    )
    await ctx.api.audit("payment_link.created", link["id"], None, {k: link.get(k) for k in record})
    return ctx.redirect(LINKS, done="link_created", mode=mode)


@routes.post("/payment-links/{link_id}/deactivate", "payment_links.manage")
async def deactivate_payment_link(ctx: Console, link_id: str) -> Response:
    mode = console_mode(ctx, ctx.form.get("mode"))
    if not _looks_like_id(link_id):
        return ctx.redirect(LINKS, error="invalid", mode=mode)
    try:
        before = await ctx.api.get(f"/v1/payment-links/{link_id}")
        link = await ctx.api.call(
            "POST", f"/v1/payment-links/{link_id}/deactivate", idempotency_key=_key(ctx, f"pl-off-{link_id}")
        )
    except GatewayProblem as exc:
        return ctx.redirect(LINKS, error=_error(exc), mode=mode)
    await ctx.api.audit(
        "payment_link.deactivated", link_id, {"status": before.get("status")}, {"status": link.get("status")}
    )
    return ctx.redirect(LINKS, done="deactivated", mode=mode)


# ---- coupons: the merchant's own stocks, and in-store redemption (核销) ------------------------------------------
COUPONS = "/console/merchant/coupons"
REDEEM = "/console/merchant/coupons/redeem"
COUPON_QR_PREFIX = "JUHECPN1:"  # marketing's QR payload prefix (services/marketing/api/routes/coupons.py QR_PREFIX)
STOCK_ACTIONS = ("start", "pause", "resume", "end")  # marketing's transitions (ending is final: no coupon is issued,
# claimed or redeemed from an ended stock any more)
REDEEM_REFUSALS = {
    "coupon_not_found": "unknown",
    "coupon_used": "used",
    "coupon_locked": "used",
    "coupon_voided": "unknown",
    "coupon_not_applicable": "rules",
    "coupon_expired": "expired",
    "undo_window_passed": "late",
}


@routes.get("/coupons", "coupons.read")
async def coupons(ctx: Console, cursor: Cursor = None) -> Response:
    """The merchant's own stocks, newest first, each with its campaign's figures: issued, claimed, redeemed, and the
    cost by funding party (the merchant's own and, for a shared stock, the platform's)."""
    page = await ctx.api.get("/v1/marketing/stocks", limit=PAGE_SIZE, cursor=cursor)
    stocks = [s for s in page.get("data", []) if s.get("owner_merchant_id") == ctx.merchant_id]
    stats: dict[str, dict[str, Any]] = {}
    for campaign_id in dict.fromkeys(s["campaign_id"] for s in stocks):
        stats[campaign_id] = await ctx.api.get(f"/v1/marketing/campaigns/{campaign_id}/stats")
    return _show(
        ctx,
        "merchant_coupons.html",
        "/coupons",
        ctx.page.gettext("Coupons"),
        stocks=stocks,
        stats=stats,
        next_cursor=page.get("next_cursor"),
    )


def percent_bps(text: str) -> int | None:
    """A percentage as typed (`15`, `12.5`, `0.01`) → basis points (1500, 1250, 1), the discount's integer unit:
    two decimals of a percent are basis points as two decimals of a yuan are fen; None when it is not one."""
    return parse_amount_minor(text)


def stock_draft(form: dict[str, str]) -> dict[str, Any] | None:
    """A merchant-funded stock's fields from the form, or None when one is not valid: a fixed amount off (yuan →
    minor units), or a percent off (→ basis points, 0.01–99.99 %) with the most one coupon takes off (the cap
    marketing requires, so a percent coupon on a large order never costs more than the merchant decided). The
    merchant funds it: a merchant may not spend the platform's money (marketing refuses that too)."""
    name = form.get("name", "").strip()[:100]
    threshold = parse_amount_minor(form.get("threshold", "")) if form.get("threshold", "").strip() else 0
    count, days = form.get("budget_count", ""), form.get("valid_days", "")
    if not name or threshold is None or not count.isdigit() or not days.isdigit():
        return None
    if not (1 <= int(count) <= 1_000_000 and 1 <= int(days) <= 3650):
        return None
    discount: dict[str, Any]
    if form.get("discount_kind", "fixed") == "percent":
        bps, cap = percent_bps(form.get("percent_off", "")), parse_amount_minor(form.get("discount_cap", ""))
        if bps is None or bps >= 10_000 or cap is None:
            return None
        discount = {"discount_kind": "percent", "percent_off_bps": bps, "discount_cap_minor": cap}
    else:
        amount = parse_amount_minor(form.get("amount_off", ""))
        if amount is None:
            return None
        discount = {"discount_kind": "fixed", "amount_off_minor": amount}
    return {
        "name": name,
        **discount,
        "currency": "CNY",
        "threshold_minor": threshold,
        "valid_days_after_claim": int(days),
        "funding_party": "merchant",
        "budget_count": int(count),
    }


@routes.post("/coupons", "coupons.manage")
async def create_stock(ctx: Console) -> Response:
    """A campaign of the same name and its merchant-funded stock, in draft (started from the list)."""
    draft = stock_draft(ctx.form)
    if draft is None:
        return ctx.redirect(COUPONS, error="invalid")
    try:
        campaign = await ctx.api.call(
            "POST", "/v1/marketing/campaigns", json={"name": draft["name"]}, idempotency_key=_key(ctx, "cmp")
        )
        body = {**draft, "campaign_id": campaign["campaign_id"]}
        stock = await ctx.api.call("POST", "/v1/marketing/stocks", json=body, idempotency_key=_key(ctx, "cps"))
    except GatewayProblem as exc:
        return ctx.redirect(COUPONS, error=_error(exc))
    await ctx.api.audit(
        "coupon_stock.created",
        stock["stock_id"],
        None,
        {
            k: stock.get(k)
            for k in (
                "name",
                "status",
                "discount_kind",
                "amount_off_minor",
                "percent_off_bps",
                "discount_cap_minor",
                "threshold_minor",
                "funding_party",
                "budget_count",
            )
        },
    )
    return ctx.redirect(COUPONS, done="stock_created")


@routes.post("/coupons/{stock_id}/{action}", "coupons.manage")
async def change_stock(ctx: Console, stock_id: str, action: str) -> Response:
    """Start a draft, pause a running stock, resume a paused one, end one for good (marketing refuses a transition
    not allowed now). Audited with the status read just before, not an assumed one."""
    if action not in STOCK_ACTIONS or not _looks_like_id(stock_id):
        return ctx.redirect(COUPONS, error="invalid")
    try:
        before = await ctx.api.get(f"/v1/marketing/stocks/{stock_id}")
        stock = await ctx.api.call(
            "POST", f"/v1/marketing/stocks/{stock_id}/{action}", idempotency_key=_key(ctx, f"cps-{action}-{stock_id}")
        )
    except GatewayProblem as exc:
        return ctx.redirect(COUPONS, error="state" if exc.status == 409 else _error(exc))
    await ctx.api.audit(
        f"coupon_stock.{action}", stock_id, {"status": before.get("status")}, {"status": stock.get("status")}
    )
    return ctx.redirect(COUPONS, done=action)


@routes.get("/coupons/redeem", "coupons.redeem")
async def redeem_form(ctx: Console) -> Response:
    return _show(ctx, "merchant_redeem.html", "/coupons/redeem", ctx.page.gettext("Redeem a coupon"))


def coupon_code(typed: str) -> dict[str, str] | None:
    """What the till typed or scanned (a scanner types the QR's payload): `{"qr_payload": …}` for Juhe's QR, else
    `{"code": …}`; None when it is neither."""
    text = typed.strip()
    if text.startswith(COUPON_QR_PREFIX):
        return {"qr_payload": text[:64]}
    code = text.replace(" ", "")
    return {"code": code} if 4 <= len(code) <= 64 and code.replace("-", "").replace("_", "").isalnum() else None


@routes.post("/coupons/redeem", "coupons.redeem")
async def redeem(ctx: Console) -> Response:
    """Redeem (核销) a coupon on an order at the counter: the coupon's discount and what the payer pays. The same form
    sent twice redeems once (its request id); a coupon already used is refused, and said so."""
    title = ctx.page.gettext("Redeem a coupon")
    code, amount = coupon_code(ctx.form.get("code", "")), parse_amount_minor(ctx.form.get("order_amount", ""))
    if code is None or amount is None:
        return _show(ctx, "merchant_redeem.html", "/coupons/redeem", title, 422, refused="invalid")
    rid = _request_id(ctx.form)
    body = {"request_id": f"console-{rid}", "order_amount_minor": amount, "currency": "CNY", **code}
    try:
        redemption = await ctx.api.call(
            "POST", "/v1/marketing/in-store/redemptions", json=body, idempotency_key=f"console-redeem-{rid}"
        )
    except GatewayProblem as exc:
        log.info("in-store redemption refused", code=exc.code, status=exc.status)
        refused = REDEEM_REFUSALS.get(exc.code, "not_allowed" if exc.status == 403 else "invalid")
        return _show(ctx, "merchant_redeem.html", "/coupons/redeem", title, 422, refused=refused)
    record = ("coupon_id", "status", "order_amount_minor", "discount_minor", "payable_minor")
    await ctx.api.audit("coupon.redeemed", redemption["redemption_id"], None, {k: redemption.get(k) for k in record})
    return _show(ctx, "merchant_redeem.html", "/coupons/redeem", title, redemption=redemption, done="redeemed")


@routes.post("/coupons/redemptions/{redemption_id}/undo", "coupons.redeem")
async def undo_redemption(ctx: Console, redemption_id: str) -> Response:
    """Take a redemption back within marketing's window (a mistake at the till): the coupon can be used again."""
    title = ctx.page.gettext("Redeem a coupon")
    if not _looks_like_id(redemption_id):
        return _show(ctx, "merchant_redeem.html", "/coupons/redeem", title, 422, refused="invalid")
    try:
        undone = await ctx.api.call(
            "POST",
            f"/v1/marketing/in-store/redemptions/{redemption_id}/undo",
            idempotency_key=f"console-undo-{redemption_id}",
        )
    except GatewayProblem as exc:
        refused = REDEEM_REFUSALS.get(exc.code, "invalid")
        return _show(ctx, "merchant_redeem.html", "/coupons/redeem", title, 422, refused=refused)
    await ctx.api.audit("coupon.redemption_undone", redemption_id, {"status": "used"}, {"status": undone.get("status")})
    return ctx.redirect(REDEEM, done="undone")
