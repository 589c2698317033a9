"""The operator console (`/console/operator`): merchants and their rates, routing with the simulator and route
health, settlement, the reconciliation exceptions pool, ledger look-up and platform health.

Every route is declared on the console guard's router with the one permission it needs (docs/consoles.md, "The
operator console"); the guard checks the session, the role and the form's CSRF token on the server before any of
this runs, and every call below goes to the gateway as the signed-in operator, whose role the gateway checks
again. A write made through another service (a fee rate change) is recorded in the console audit log with the
record before and after. Outcomes travel as codes (`?done=` / `?error=`), never as reflected text.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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

DONE = ("rate_changed", "assigned", "requeried", "resolved")
ERRORS = (
    "rate_invalid", "reason_required", "amount_invalid", "not_found", "forbidden", "state_conflict",
    "not_requeryable", "unavailable", "failed",
)  # fmt: skip
# How far ahead a changed rate starts: the old one must end in the future (routing refuses an end in the past),
# and one minute lets the operator see the change before it quotes.
RATE_CHANGE_LEAD_SECONDS = 60
RATE_BPS_MAX = 10_000
REASON_LENGTH_MAX = 1000
METHODS = ("wechat", "alipay", "unionpay", "ecny", "wallet")
SCENES = ("native_qr", "jsapi", "mini_program", "app", "h5", "page", "barcode", "quick", "b2b")
PAYER_CLIENTS = ("other", "wechat", "alipay")
EXCEPTION_STATES = ("unresolved", "open", "assigned", "resolved")
Text = Query(default="", max_length=64)


def _nav(ctx: ConsoleContext, current: str) -> list[dict[str, Any]]:
    items = (
        ("", "platform.dashboard.read", "Overview"), ("/merchants", "platform.merchants.read", "Merchants"),
        ("/routing", "platform.routing.read", "Routing"), ("/routing/simulate", "platform.routing.read", "Simulator"),
        ("/settlement", "platform.settlement.read", "Settlement"),
        ("/reconciliation", "platform.reconciliation.read", "Reconciliation"),
        ("/ledger", "platform.ledger.read", "Ledger"), ("/audit", "platform.audit.read", "Audit log"),
        ("/health", "platform.health.read", "Platform health"),
    )  # fmt: skip
    say = ctx.page.gettext
    return [{"href": BASE + path, "permission": permission, "label": say(label), "current": path == current}
            for path, permission, label in items]  # fmt: skip


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
    if exc.code in ("reconciliation_exception_resolved", "conflict", "version_conflict", "fee_rate_overlap"):
        return "state_conflict"
    if exc.code == "reconciliation_exception_not_requeryable":
        return "not_requeryable"
    return "failed"


def _page(ctx: ConsoleContext, template: str, current: str, status_code: int = 200, **values: Any) -> Response:
    return ctx.render(f"console/operator_{template}.html", status_code, nav=_nav(ctx, current), **_outcome(ctx),
                      **values)  # fmt: skip


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
async def merchants(ctx: Console, merchant_id: str = Text) -> Response:
    """Look a merchant up by id: its channels, routing contracts and fee rates (with the change form)."""
    merchant_id = merchant_id.strip()
    if not merchant_id:
        return _page(ctx, "merchants", "/merchants", merchant_id="")
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        data = {"merchant": await op.merchant(merchant_id), "channels": await op.merchant_channels(merchant_id)}
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

    return await _guarded(ctx, "routing", "/routing", load, chart_width=CHART_WIDTH, bar_height=BAR_HEIGHT,
                          request_id=_request_id())  # fmt: skip


@routes.get("/routing/simulate", "platform.routing.read")
async def simulate(
    ctx: Console, merchant_id: str = Text, amount: str = Query(default="", max_length=20),
    scene: str = Query(default="native_qr", max_length=20), payer_client: str = Query(default="other", max_length=10),
    methods: list[str] = Query(default=[], max_length=len(METHODS)),
) -> Response:  # fmt: skip
    """What would this payment do: the chosen route, and why every route was kept or dropped."""
    question = {"merchant_id": merchant_id.strip(), "amount": amount,
                "scene": scene if scene in SCENES else "native_qr",
                "payer_client": payer_client if payer_client in PAYER_CLIENTS else "other",
                "methods": [m for m in methods if m in METHODS] or ["wechat", "alipay"]}  # fmt: skip
    values: dict[str, Any] = {"question": question, "methods_all": METHODS, "scenes": SCENES,
                              "payer_clients": PAYER_CLIENTS}  # fmt: skip
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
    ctx: Console, holder_id: str = Text, status: str = Query(default="", max_length=20),
    cursor: str = Query(default="", max_length=64),
) -> Response:  # fmt: skip
    """Settlement batches and payouts (every merchant's, or one holder's), and the settlement ↔ ledger check."""
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        payouts = await op.payouts(holder_id=holder_id or None, status=status or None, cursor=cursor or None)
        return {"batches": await op.batches(holder_id or None), "payouts": items_of(payouts),
                "payouts_next": (payouts or {}).get("next_cursor"), "consistency": await op.consistency()}  # fmt: skip

    return await _guarded(ctx, "settlement", "/settlement", load, holder_id=holder_id, status=status)


# ---- reconciliation exceptions pool -----------------------------------------------------------------------
@routes.get("/reconciliation", "platform.reconciliation.read")
async def reconciliation(
    ctx: Console, state: str = Query(default="unresolved", max_length=12), mine: str = Query(default="", max_length=1),
    merchant_id: str = Text, cursor: str = Query(default="", max_length=24),
) -> Response:  # fmt: skip
    """The pool, oldest first: every unresolved mismatch with its age, assignee and state; cursor pages."""
    state = state if state in EXCEPTION_STATES else "unresolved"
    assignee = str(ctx.member.get("email")) if mine == "1" else None

    async def load() -> dict[str, Any]:
        page = await _op(ctx).exceptions(state=state, assignee=assignee, merchant_id=merchant_id or None,
                                         cursor=cursor if cursor.isdigit() else None)  # fmt: skip
        return {"items": items_of(page), "next_cursor": (page or {}).get("next_cursor")}

    return await _guarded(ctx, "reconciliation", "/reconciliation", load, state=state, mine=mine == "1",
                          merchant_id=merchant_id, states=EXCEPTION_STATES)  # fmt: skip


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
    ctx: Console, holder_id: str = Text, account_id: str = Text, as_of: str = Query(default="", max_length=32),
    cursor: str = Query(default="", max_length=80),
) -> Response:  # fmt: skip
    """An account holder's accounts; one account's balance (now or as of a time) and statement."""
    try:
        at = datetime.fromisoformat(as_of) if as_of else None
    except ValueError:
        at = None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    op = _op(ctx)

    async def load() -> dict[str, Any]:
        data: dict[str, Any] = {"accounts": await op.accounts(holder_id) if holder_id else []}
        if account_id:
            data["balance"] = await op.balance(account_id, at)
            data["statement"] = await op.statement(account_id, cursor or None)
        return data

    return await _guarded(ctx, "ledger", "/ledger", load, holder_id=holder_id, account_id=account_id, as_of=as_of)


# ---- audit log --------------------------------------------------------------------------------------------
@routes.get("/audit", "platform.audit.read")
async def audit(ctx: Console, merchant_id: str = Text, cursor: str = Query(default="", max_length=64)) -> Response:
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
