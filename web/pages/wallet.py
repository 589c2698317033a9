"""My Wallet (`/wallet`): sign in by a one-time link, see every balance, act on it with the payment PIN.

Every read and write goes to the gateway as the signed-in user (the ledger's wallet API, the gateway's PIN
API). Money out (withdraw, repay, exchange points) needs the payment PIN, checked by the gateway first;
the PIN is never stored, logged or echoed back by this process.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from libs.common.logging import get_logger
from web.clients.gateway import GatewayProblem, GatewayUnavailable
from web.i18n import parse_amount_minor
from web.pages import PageContext, page_context
from web.sessions import Session, new_csrf

log = get_logger("juhe.web.wallet")
router = APIRouter(prefix="/wallet", include_in_schema=False)
Page = Annotated[PageContext, Depends(page_context)]

# Outcomes named by code in `?done=` / `?error=`: only these texts are ever shown (nothing reflected).
DONE = ("signed_in", "pin_set", "pin_changed", "withdrawal_pending", "repaid", "points_exchanged", "signed_out")
ERRORS = (
    "amount_invalid",
    "pin_invalid",
    "pin_mismatch",
    "pin_required",
    "payment_pin_incorrect",
    "payment_pin_locked",
    "payment_pin_too_simple",
    "insufficient_funds",
    "limit_exceeded",
    "entitlement_denied",
    "repayment_too_large",
    "kyc_required",
    "failed",
    "unavailable",
)
PIN_FORM_CODES = {"payment_pin_incorrect", "payment_pin_locked", "payment_pin_too_simple", "payment_pin_already_set"}


def _outcome(page: PageContext) -> dict[str, Any]:
    done, error = page.request.query_params.get("done"), page.request.query_params.get("error")
    return {"done": done if done in DONE else None, "error": error if error in ERRORS else None}


def _request_id() -> str:
    """One per rendered form: the idempotency key of what the form does, so a double submit does it once."""
    return secrets.token_hex(12)


def _error_code(exc: GatewayProblem) -> str:
    log.info("platform refused a wallet action", code=exc.code, status=exc.status)  # never the form's values
    if exc.code in ERRORS:
        return exc.code
    if exc.code in ("kyc_not_verified", "bank_card_not_verified", "no_bank_card"):
        return "kyc_required"
    return "failed"


# ---- sign in / out --------------------------------------------------------------------------------------
@router.get("/sign-in")
async def sign_in_form(page: Page, token: Annotated[str, Query(max_length=200)] = "") -> Response:
    """A confirm page, not the sign-in itself: a link preview or scanner opening the URL must not use it up."""
    if not token:
        return page.render("wallet_signed_out.html", status_code=400, reason="link_missing")
    return page.render("wallet_sign_in.html", token=token, pre_session_csrf=page.pre_session_csrf())


@router.post("/sign-in")
async def sign_in(page: Page) -> Response:
    form = await page.form()
    try:
        session = await page.web.gateway.redeem_sign_in_link(form.get("token", ""), browser_ip=page.browser_ip())
    except GatewayProblem as exc:
        status = 429 if exc.status == 429 else 401
        page.end_session()
        return page.render(
            "wallet_signed_out.html", status_code=status, reason="rate_limited" if status == 429 else "link_invalid"
        )
    expires = _epoch(session["expires_at"])
    now = time.time()
    page.start_session(
        Session(
            user_id=session["user_id"],
            token=session["token"],
            expires_epoch=expires,
            idle_until_epoch=min(now + page.settings.session_idle_seconds, expires),
            csrf=new_csrf(),
        )
    )
    return page.redirect("/wallet", done="signed_in")


@router.post("/sign-out")
async def sign_out(page: Page) -> Response:
    if page.session is not None:
        await page.form()
        # The cookie goes anyway; if the gateway cannot be told, the token only lives out its own expiry.
        with contextlib.suppress(GatewayProblem, GatewayUnavailable):
            await page.web.gateway.sign_out(page.session.token)
    page.end_session()
    return page.render("wallet_signed_out.html", reason="signed_out")


# ---- overview -------------------------------------------------------------------------------------------
@router.get("")
async def overview(page: Page) -> Response:
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    try:
        wallet = await page.web.gateway.my_wallet(page.session.token, page.session.user_id, recent_limit=10)
        pin = await page.web.gateway.pin_status(page.session.token)
    except GatewayProblem as exc:
        if exc.status == 401:
            page.end_session()
            return page.render("wallet_signed_out.html", status_code=401, reason="expired")
        return page.render("wallet_error.html", status_code=exc.status, code=exc.code)
    except GatewayUnavailable:
        return page.render("wallet_error.html", status_code=503, code="unavailable")
    return page.render(
        "wallet.html",
        wallet=wallet,
        pin=pin,
        groups=_groups(wallet),
        request_id=_request_id(),
        fee_minor=page.settings.withdrawal_fee_minor,
        **_outcome(page),
    )


def _groups(wallet: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {"balance": [], "prepaid": [], "points": [], "coupon": [], "credit": []}
    for sub in wallet.get("subaccounts", []):
        if sub["subaccount_type"] in groups:
            groups[sub["subaccount_type"]].append(sub)
    return groups


# ---- history --------------------------------------------------------------------------------------------
@router.get("/history")
async def history(
    page: Page,
    account: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")] = None,
    direction: Annotated[str | None, Query(pattern=r"^(debit|credit|)$")] = None,
    operation: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]*$")] = None,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,19}$")] = None,
) -> Response:
    """One sub-account's entries, newest first, a page at a time (the ledger's cursor); direction and
    operation filter the page shown."""
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    gateway, s = page.web.gateway, page.session
    try:
        wallet = await gateway.my_wallet(s.token, s.user_id, recent_limit=1)
        accounts = [
            a for a in wallet["subaccounts"] if a["subaccount_type"] in ("balance", "prepaid", "points", "credit")
        ]
        chosen = next((a for a in accounts if a["account_id"] == account), accounts[0] if accounts else None)
        items: list[dict[str, Any]] = []
        next_cursor = None
        if chosen is not None:
            got = await gateway.history(
                s.token, s.user_id, chosen["account_id"], cursor=cursor, limit=page.settings.history_page_size
            )
            items, next_cursor = got["data"], got.get("next_cursor")
    except GatewayProblem as exc:
        return page.render("wallet_error.html", status_code=exc.status, code=exc.code)
    except GatewayUnavailable:
        return page.render("wallet_error.html", status_code=503, code="unavailable")
    shown = [
        i
        for i in items
        if (not direction or i["direction"] == direction) and (not operation or i["operation"] == operation)
    ]
    return page.render(
        "wallet_history.html",
        accounts=accounts,
        chosen=chosen,
        items=shown,
        next_cursor=next_cursor,
        direction=direction or "",
        operation=operation or "",
        operations=sorted({i["operation"] for i in items if i["operation"]}),
    )


# ---- payment PIN ----------------------------------------------------------------------------------------
@router.get("/pin")
async def pin_form(page: Page) -> Response:
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    try:
        pin = await page.web.gateway.pin_status(page.session.token)
    except GatewayUnavailable:
        return page.render("wallet_error.html", status_code=503, code="unavailable")
    return page.render("wallet_pin.html", pin=pin, **_outcome(page))


@router.post("/pin")
async def pin_set(page: Page) -> Response:
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    form = await page.form()
    new, again, current = form.get("pin", ""), form.get("pin_again", ""), form.get("current_pin") or None
    if not (new.isascii() and new.isdigit() and len(new) == 6):
        return page.redirect("/wallet/pin", error="pin_invalid")
    if new != again:
        return page.redirect("/wallet/pin", error="pin_mismatch")
    try:
        await page.web.gateway.set_pin(page.session.token, pin=new, current_pin=current)
    except GatewayProblem as exc:
        code = exc.code if exc.code in PIN_FORM_CODES else ("pin_invalid" if exc.status == 422 else "failed")
        return page.redirect("/wallet/pin", error=code if code in ERRORS else "failed")
    except GatewayUnavailable:
        return page.redirect("/wallet/pin", error="unavailable")
    return page.redirect("/wallet", done="pin_changed" if current else "pin_set")


# ---- money out: withdraw, repay, exchange points (each with the PIN) -------------------------------------
async def _with_pin(page: PageContext, form: dict[str, str]) -> str | None:
    """The PIN checked at the gateway; an error code, or None when it is right."""
    assert page.session is not None
    pin = form.get("pin", "")
    if not (pin.isascii() and pin.isdigit() and len(pin) == 6):
        return "pin_invalid"
    try:
        await page.web.gateway.verify_pin(page.session.token, pin)
    except GatewayProblem as exc:
        return "pin_required" if exc.code == "payment_pin_not_set" else _error_code(exc)
    except GatewayUnavailable:
        return "unavailable"
    return None


def _request_id_of(form: dict[str, str]) -> str:
    rid = form.get("request_id", "")
    return rid if len(rid) == 24 and all(c in "0123456789abcdef" for c in rid) else _request_id()


@router.post("/withdraw")
async def withdraw(page: Page) -> Response:
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    form = await page.form()
    amount = parse_amount_minor(form.get("amount", ""))
    if amount is None:
        return page.redirect("/wallet", error="amount_invalid")
    session = page.session
    return await _money_out(
        page,
        form,
        "withdrawal_pending",
        lambda: page.web.gateway.withdraw(
            session.token,
            session.user_id,
            request_id=_request_id_of(form),
            amount_minor=amount,
            fee_minor=page.settings.withdrawal_fee_minor,
        ),
    )


@router.post("/repay")
async def repay(page: Page) -> Response:
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    form = await page.form()
    amount = parse_amount_minor(form.get("amount", ""))
    bill_id = form.get("bill_id", "")
    if amount is None or not bill_id.replace("_", "").isalnum():
        return page.redirect("/wallet", error="amount_invalid")
    session = page.session
    return await _money_out(
        page,
        form,
        "repaid",
        lambda: page.web.gateway.repay(session.token, bill_id, request_id=_request_id_of(form), amount_minor=amount),
    )


@router.post("/points/exchange")
async def exchange_points(page: Page) -> Response:
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    form = await page.form()
    text = form.get("points", "").strip()
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= 10**12):
        return page.redirect("/wallet", error="amount_invalid")
    session = page.session
    return await _money_out(
        page,
        form,
        "points_exchanged",
        lambda: page.web.gateway.exchange_points(
            session.token, session.user_id, request_id=_request_id_of(form), points=int(text)
        ),
    )


async def _money_out(page: Page, form: Any, done: str, call: Callable[[], Awaitable[object]]) -> Response:
    """A money-out action once its form is valid: the payment PIN first, then the gateway call; every
    refusal or outage goes back to the wallet page as a message, success as `done`."""
    if (refused := await _with_pin(page, form)) is not None:
        return page.redirect("/wallet", error=refused)
    try:
        await call()
    except GatewayProblem as exc:
        return page.redirect("/wallet", error=_error_code(exc))
    except GatewayUnavailable:
        return page.redirect("/wallet", error="unavailable")
    return page.redirect("/wallet", done=done)


# ---- top-up (money in: no PIN) -----------------------------------------------------------------------
@router.post("/top-up")
async def top_up(page: Page) -> Response:
    """Until the hosted checkout exists: a top-up order paid on the channel's own H5 page, reached by a link
    (a redirect after a form post would be blocked by `form-action 'self'`); the balance grows once the
    channel's payment succeeded and the ledger credited it."""
    if page.session is None:
        return page.render("wallet_signed_out.html", status_code=401, reason="no_session")
    form = await page.form()
    amount = parse_amount_minor(form.get("amount", ""))
    if amount is None:
        return page.redirect("/wallet", error="amount_invalid")
    try:
        order = await page.web.gateway.top_up_order(
            page.session.token,
            page.session.user_id,
            request_id=_request_id_of(form),
            amount_minor=amount,
            client_ip=page.browser_ip(),
        )
    except GatewayProblem as exc:
        return page.redirect("/wallet", error=_error_code(exc))
    action = (order.get("payment") or {}).get("payer_action") or {}
    url = action.get("url") if action.get("type") == "redirect" else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return page.redirect("/wallet", error="failed")
    return page.render("wallet_top_up.html", amount_minor=amount, pay_url=url, channel=order["payment"].get("channel"))


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
