"""Hosted checkout sessions: create, read, expire; the page's view and its payments; the settling loop.

A session holds at most one live payment (its *slot* `payment_seq`). The page starts a payment by claiming the
next slot with a compare-and-set, then creates an ordinary cashier payment (merchant order number
`<session id>.<n>`, the session's deadline, only the chosen channel) through `flows.payments.create_payment`,
so routing, fail-over, re-drive, notifications and the ledger posting are the same as for any payment.
Choosing another method while one is live closes the live one at its channel first; a payment that
already succeeded completes the session instead. The session completes with the first succeeded payment
(`UPDATE … WHERE status = 'open'`, with its event in the same transaction), so it is paid at most once.
A success that a channel reports for a payment Juhe had already closed (a late success) is a
`payment.succeeded` with `late_success: true`: on a session still open it completes the session (the live
payment is closed first); on a session already completed by another payment or expired it is refunded in
full, automatically and once (`refund_late_successes`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from libs.common.modes import mode_of
from services.cashier.connectors.registry import CHANNELS
from services.cashier.domain import checkout as rules
from services.cashier.domain.errors import (
    DUPLICATE_MERCHANT_ORDER,
    MERCHANT_NOT_FOUND,
    PAYER_MISMATCH,
    PAYMENT_NOT_CLOSABLE,
)
from services.cashier.domain.payer_actions import normalised_payer_action
from services.cashier.domain.payments import PaymentScene, PaymentStatus, request_fingerprint
from services.cashier.events import PAYMENTS_TOPIC
from services.cashier.flows.checkout_oauth import authorize_links, oauth_payer
from services.cashier.flows.context import Cashier
from services.cashier.flows.merchants import gateway_merchant_name, merchant_webhook_secret, refuse_if_suspended
from services.cashier.flows.payments import PaymentDraft, close_payment, create_payment
from services.cashier.flows.refunds import RefundDraft, create_refund
from services.cashier.flows.routing import METHOD_OF_CHANNEL
from services.cashier.flows.wallet import confirm_wallet_payment
from services.cashier.store import checkout as store
from services.cashier.store import merchants as store_merchants
from services.cashier.store.merchants import get_merchant, list_channels
from services.cashier.store.payments import get_payment_by_order_no, get_payment_unscoped

log = get_logger("juhe.cashier.checkout")

LIVE = (PaymentStatus.CREATED, PaymentStatus.PROCESSING)
DESCRIPTION_MAX_CHARS = 128  # what a payment (and the channels) take
MERCHANT_NAME_MAX_CHARS = 128  # what the page shows of the registry's name
LATE_REFUND_REASON = "checkout_late_success"  # the payer paid a session twice, or after it ended


@dataclass(frozen=True, slots=True)
class SessionDraft:
    """A validated create request (the API schema maps onto this)."""

    merchant_order_no: str
    amount_minor: int
    currency: str
    description: str
    line_items: list[dict[str, Any]]
    allowed_methods: tuple[str, ...] | None
    return_url: str
    cancel_url: str | None
    expires_in_seconds: int | None
    locale: str | None
    wallet_holder_id: str | None
    metadata: dict[str, str]
    # Test or live (docs/test-mode.md): the mode of the session's payments. Not in the fingerprint: an order number
    # reused in the other mode is refused without naming the session.
    livemode: bool = False

    def fingerprint(self) -> str:
        return request_fingerprint({k: getattr(self, k) for k in self.__slots__ if k != "livemode"})


def _token(cashier: Cashier, session_id: str) -> str:
    return rules.page_token(cashier.settings.internal_token_secret.get_secret_value(), session_id)


def pages_origin(cashier: Cashier) -> str:
    """Where payers open pages: the gateway's public origin (it forwards `/checkout` to the web process). The
    cashier's `checkout_base_url`; else its `gateway_url` (the same address when services and payers reach the
    gateway alike, as in `make run`), else its `public_base_url` (run alone)."""
    settings = cashier.settings
    return (settings.checkout_base_url or settings.gateway_url or settings.public_base_url).rstrip("/")


def page_url(cashier: Cashier, session_id: str) -> str:
    return f"{pages_origin(cashier)}/checkout/{_token(cashier, session_id)}"


def session_view(cashier: Cashier, row: Any) -> dict[str, Any]:
    """What the merchant sees (create, GET, expire) and what the events carry."""
    return {
        "id": row.id,
        "object": "checkout.session",
        "merchant_id": row.merchant_id,
        "merchant_order_no": row.merchant_order_no,
        "status": row.status,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "description": row.description,
        "line_items": row.line_items,
        "allowed_methods": row.allowed_methods,
        "url": page_url(cashier, row.id),
        "return_url": row.return_url,
        "cancel_url": row.cancel_url,
        "locale": row.locale,
        "wallet_holder_id": row.wallet_holder_id,
        "metadata": row.metadata,
        "expires_at": row.expires_at,
        "payment_id": row.paid_payment_id,
        "payments_started": row.payment_seq,
        "payment_link_id": row.payment_link_id,
        "livemode": row.livemode,
        "completed_at": row.completed_at,
        "expired_at": row.expired_at,
        "created_at": row.created_at,
    }


def _event_data(row: Any) -> dict[str, Any]:
    return {
        "checkout_session_id": row.id,
        "merchant_id": row.merchant_id,
        "merchant_order_no": row.merchant_order_no,
        "status": row.status,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "payment_id": row.paid_payment_id,
        "metadata": row.metadata,
        "completed_at": row.completed_at.isoformat() if row.completed_at else None,
        "expired_at": row.expired_at.isoformat() if row.expired_at else None,
    }


# ---- merchant API -------------------------------------------------------------------------------------
async def create_session(
    cashier: Cashier,
    *,
    merchant_id: str,
    draft: SessionDraft,
    payment_link_id: str | None = None,
    guard: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create, or answer the earlier session of the same order number and body (idempotent); another body
    with that order number is 409 `duplicate_merchant_order`. `guard` runs in the insert's transaction first
    (a payment link locks itself and counts its uses there)."""
    fingerprint = draft.fingerprint()
    now = cashier.clock()
    expires_at = rules.resolve_expiry(
        now, draft.expires_in_seconds, channel_max_seconds=cashier.settings.payment_expiry_max_seconds
    )
    # The name the payer sees is the registry's (the gateway's), asked outside the transaction; a merchant
    # cannot put another shop's name on its page. Run without a gateway: the merchant id.
    merchant_name = await gateway_merchant_name(cashier, merchant_id) or merchant_id
    async with cashier.uow.begin() as tx:
        if await get_merchant(tx.conn, merchant_id) is None:
            raise Problem(
                MERCHANT_NOT_FOUND,
                f"merchant {merchant_id} is not set up in the cashier (no webhook secret to sign the return with)",
            )
        if guard is not None:
            await guard(tx.conn)
        session_id = new_id("cs")
        row = await store.insert_session(
            tx.conn,
            {
                "id": session_id,
                "merchant_id": merchant_id,
                "merchant_order_no": draft.merchant_order_no,
                "request_sha256": fingerprint,
                "token_sha256": rules.token_digest(_token(cashier, session_id)),
                "merchant_name": merchant_name[:MERCHANT_NAME_MAX_CHARS],
                "amount_minor": draft.amount_minor,
                "currency": draft.currency,
                "description": draft.description,
                "line_items": draft.line_items,
                "allowed_methods": list(draft.allowed_methods) if draft.allowed_methods is not None else None,
                "return_url": draft.return_url,
                "cancel_url": draft.cancel_url,
                "locale": draft.locale,
                "wallet_holder_id": draft.wallet_holder_id,
                "metadata": draft.metadata,
                "status": rules.SessionStatus.OPEN.value,
                "expires_at": expires_at,
                "payment_link_id": payment_link_id,
                "livemode": draft.livemode,
            },
        )
        if row is None:
            row = await store.get_session_by_order_no(
                tx.conn, merchant_id=merchant_id, merchant_order_no=draft.merchant_order_no
            )
            assert row is not None
            if row.livemode != draft.livemode:  # never show a session of the other mode, not even its id
                raise Problem(
                    DUPLICATE_MERCHANT_ORDER,
                    f"merchant order {draft.merchant_order_no} already has a checkout session in the other mode",
                )
            if row.request_sha256 != fingerprint:
                raise Problem(
                    DUPLICATE_MERCHANT_ORDER,
                    f"merchant order {draft.merchant_order_no} already has a checkout session with another request",
                    checkout_session_id=row.id,
                )
            return session_view(cashier, row), False
    return session_view(cashier, row), True


async def _merchant_session(cashier: Cashier, merchant_id: str, session_id: str, livemode: bool | None) -> Any:
    """The merchant's session; None when there is none or it is of the other mode than `livemode`."""
    async with cashier.uow.read() as conn:
        row = await store.get_session(conn, merchant_id=merchant_id, session_id=session_id)
    return row if row is not None and livemode in (None, row.livemode) else None


async def read_session(
    cashier: Cashier, *, merchant_id: str, session_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    row = await _merchant_session(cashier, merchant_id, session_id, livemode)
    if row is None:
        raise Problem(rules.CHECKOUT_SESSION_NOT_FOUND, f"checkout session {session_id} does not exist")
    return session_view(cashier, await settle(cashier, row))


async def expire_now(
    cashier: Cashier, *, merchant_id: str, session_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    """The merchant ends an open session now (its live payment is closed at the channel first). A session
    already completed is answered 409 `checkout_session_not_open`; an expired one as it is."""
    row = await _merchant_session(cashier, merchant_id, session_id, livemode)
    if row is None:
        raise Problem(rules.CHECKOUT_SESSION_NOT_FOUND, f"checkout session {session_id} does not exist")
    row = await _expire(cashier, await settle(cashier, row))
    if row.status == rules.SessionStatus.COMPLETED:
        raise Problem(
            rules.CHECKOUT_SESSION_NOT_OPEN, "the session was paid", status=row.status, payment_id=row.paid_payment_id
        )
    return session_view(cashier, row)


# ---- settling: complete on success, expire at the deadline ----------------------------------------------
async def settle(cashier: Cashier, row: Any) -> Any:
    """Bring an open session up to date: its payment succeeded → completed; an earlier payment that a channel
    reported paid after Juhe had closed it (a late success) → completed by that one, once the live payment is
    closed; past the deadline → expired."""
    if row.status != rules.SessionStatus.OPEN:
        return row
    if row.payment_id is not None:
        async with cashier.uow.read() as conn:
            payment = await get_payment_unscoped(conn, row.payment_id)
        if payment is not None and payment.status == PaymentStatus.SUCCEEDED:
            return await _complete(cashier, row, payment.id)
    async with cashier.uow.read() as conn:
        late = await store.first_late_success(conn, row.id)
    if late is not None:
        return await _complete_by_late(cashier, row, late.id)
    if cashier.clock() >= row.expires_at:
        return await _expire(cashier, row)
    return row


async def _complete_by_late(cashier: Cashier, row: Any, late_payment_id: str) -> Any:
    """The payer paid an earlier (closed) QR of this open session: that money completes it. The live payment is
    closed first, so it cannot be paid as well; if it turns out paid, it completes the session and the late one
    is refunded (`refund_late_successes`). If its channel cannot confirm the close, the next round decides."""
    try:
        current = await _close_live(cashier, row)
    except _StillLive:
        return row
    if current is not None and current.status == PaymentStatus.SUCCEEDED:
        return await _complete(cashier, row, current.id)
    return await _complete(cashier, row, late_payment_id)


async def _complete(cashier: Cashier, row: Any, payment_id: str) -> Any:
    return await _finish(
        cashier,
        row.id,
        rules.CHECKOUT_SESSION_COMPLETED,
        functools.partial(store.complete_session, session_id=row.id, payment_id=payment_id, now=cashier.clock()),
    )


async def _finish(
    cashier: Cashier, session_id: str, event_type: str, change: Callable[[AsyncConnection], Awaitable[Any]]
) -> Any:
    """Apply one open → final compare-and-set with its event in the same transaction; the loser of a race
    (already final) publishes nothing and gets the session as it now is."""
    async with cashier.uow.begin() as tx:
        done = await change(tx.conn)
        if done is not None:
            tx.publish(topic=PAYMENTS_TOPIC, type=event_type, subject=done.id, data=_event_data(done))
            return done
        return await store.get_session_unscoped(tx.conn, session_id)


class _StillLive(Exception):
    """The channel could not confirm the close of the session's live payment (yet)."""


async def _close_live(cashier: Cashier, row: Any) -> Any:
    """Close the session's live payment at its channel; the payment as it is afterwards (None: the session has
    no recorded payment). Raises `_StillLive` when the channel cannot confirm the close."""
    if row.payment_id is None:
        return None
    async with cashier.uow.read() as conn:
        payment = await get_payment_unscoped(conn, row.payment_id)
    if payment is not None and payment.status in LIVE:
        try:
            await close_payment(cashier, merchant_id=row.merchant_id, payment_id=payment.id)
        except Problem as exc:
            if exc.spec is not PAYMENT_NOT_CLOSABLE:
                log.info("checkout: the live payment could not be closed yet", session_id=row.id, code=exc.spec.code)
                raise _StillLive from exc
        async with cashier.uow.read() as conn:
            payment = await get_payment_unscoped(conn, row.payment_id)
    return payment


async def _expire(cashier: Cashier, row: Any) -> Any:
    """Close the live payment at its channel, then expire. If that payment turns out paid, complete instead;
    if the channel cannot confirm the close, the session stays open for the next round."""
    if row.status != rules.SessionStatus.OPEN:
        return row
    if row.payment_id is not None:
        try:
            payment = await _close_live(cashier, row)
        except _StillLive:
            return row
        if payment is not None and payment.status == PaymentStatus.SUCCEEDED:
            return await _complete(cashier, row, payment.id)
    elif row.payment_seq > 0 and not _claim_stale(cashier, row):
        return row  # a payment is being set up this instant: it gets the session's deadline, decide next round
    return await _finish(
        cashier,
        row.id,
        rules.CHECKOUT_SESSION_EXPIRED,
        functools.partial(store.expire_session, session_id=row.id, now=cashier.clock()),
    )


async def settle_due(cashier: Cashier) -> int:
    """The worker's round: every open session past its deadline or whose payment succeeded; then the late
    successes of final sessions are refunded."""
    async with cashier.uow.read() as conn:
        due = await store.list_due(conn, now=cashier.clock(), limit=cashier.settings.expiry_batch_max)
    for row in due:
        await settle(cashier, row)
    return max(len(due), await refund_late_successes(cashier))


async def refund_late_successes(cashier: Cashier) -> int:
    """Give back, in full, every payment a channel reported paid for a session that had already ended or was
    paid by another payment (the payer paid twice, or after the deadline).

    Derived from stored facts on every round, so the order in which the channel's success and the session's
    completion or expiry happened does not matter; exactly once because the refund's merchant refund number is
    `late.<payment id>` (unique per merchant: a concurrent round or another replica gets the same refund back)
    and a payment that has any refund is not listed again. A wallet top-up is not refunded: its money is in the
    payer's own wallet (the ledger credited it), from where the payer can withdraw it."""
    async with cashier.uow.read() as conn:
        due = await store.list_late_to_refund(conn, limit=cashier.settings.expiry_batch_max)
    for payment in due:
        draft = RefundDraft(
            amount_minor=payment.amount_minor - payment.refund_reserved_minor,
            reason=LATE_REFUND_REASON,
            merchant_refund_no=store.late_refund_no(payment.id),
        )
        try:
            result = await create_refund(cashier, merchant_id=payment.merchant_id, payment_id=payment.id, draft=draft)
        except Problem as exc:  # an outage: the next round asks again (nothing was written)
            log.warning("checkout late success: refund not made yet", payment_id=payment.id, code=exc.spec.code)
            continue
        log.info(
            "checkout late success refunded",
            payment_id=payment.id,
            refund_id=result.refund["id"],
            checkout_session_id=payment.metadata.get("checkout_session_id"),
        )
    return len(due)


def _claim_stale(cashier: Cashier, row: Any) -> bool:
    claimed = row.payment_claimed_at
    return claimed is None or cashier.clock() - claimed > timedelta(seconds=rules.CLAIM_STALE_SECONDS)


# ---- the page (public by token; the wallet by a signed-in user) ---------------------------------------
async def _by_token(cashier: Cashier, token: str) -> Any:
    async with cashier.uow.read() as conn:
        row = await store.get_session_by_token(conn, rules.token_digest(token))
    if row is None:
        raise Problem(rules.CHECKOUT_SESSION_NOT_FOUND, "no checkout session for this page")
    return await settle(cashier, row)


async def page_view(cashier: Cashier, token: str, *, scene: str | None = None) -> dict[str, Any]:
    """What the page shows; with `scene`, also the methods routing can serve for it (asked per page load)."""
    row = await _by_token(cashier, token)
    return await _page(cashier, row, token, scene=scene)


async def _page(cashier: Cashier, row: Any, token: str, *, scene: str | None) -> dict[str, Any]:
    payment = None
    if row.payment_id is not None:
        async with cashier.uow.read() as conn:
            payment = await get_payment_unscoped(conn, row.payment_id)
    view: dict[str, Any] = {
        "status": row.status,
        "merchant_id": row.merchant_id,  # what the payer's coupons are asked for (not a secret)
        "merchant_name": row.merchant_name,
        "merchant_order_no": row.merchant_order_no,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "description": row.description,
        "line_items": row.line_items,
        "locale": row.locale,
        "expires_at": row.expires_at,
        "server_time": cashier.clock(),
        "cancel_url": row.cancel_url,
        "payment": None
        if payment is None
        else {
            "id": payment.id,
            "method": payment.channel or row.payment_method,
            "scene": payment.scene,
            "status": payment.status,
            "payer_action": normalised_payer_action(payment.payer_action) if payment.status in LIVE else None,
            "failure_code": payment.failure_code,
            "expire_at": payment.expire_at,
            "amount_minor": payment.amount_minor,
            "discount_minor": payment.discount_minor,
        },
        "return_url": None,
    }
    async with cashier.uow.read() as conn:
        merchant = await get_merchant(conn, row.merchant_id)
    # The origins that may frame this page (juhe.js): the web process puts them in its CSP frame-ancestors.
    view["frame_origins"] = list(merchant.checkout_origins) if merchant is not None else []
    if row.status == rules.SessionStatus.COMPLETED:
        view["return_url"] = _signed_return(cashier, row, merchant)
    if scene is not None and row.status == rules.SessionStatus.OPEN:
        view["methods"] = await available_methods(cashier, row, scene=scene)
        if scene == "jsapi":  # inside an app: where the payer authorises (flows/checkout_oauth.py)
            view["oauth"] = await authorize_links(
                cashier, row, token, view["methods"], pages_origin=pages_origin(cashier)
            )
    return view


def _signed_return(cashier: Cashier, row: Any, merchant: Any) -> str | None:
    if merchant is None:
        return None
    params = {
        "checkout_session_id": row.id,
        "merchant_order_no": row.merchant_order_no,
        "status": row.status,
        "amount_minor": str(row.amount_minor),
        "currency": row.currency,
        "payment_id": row.paid_payment_id,
        "t": str(int(time.time())),
    }
    params["sig"] = rules.sign_return(merchant_webhook_secret(cashier.sealer, merchant), params)
    separator = "&" if "?" in row.return_url else "?"
    return f"{row.return_url}{separator}{urlencode(params)}"


async def page_methods(
    cashier: Cashier, merchant_id: str, *, allowed_methods: Sequence[str] | None, currency: str, livemode: bool
) -> list[str]:
    """The merchant's enabled channels a hosted page can offer for `currency`, within `allowed_methods` (None:
    all), in the merchant's priority order, of the page's mode only (a test session offers only test configs). A
    page load narrows them further by scene and routing (`available_methods`); a payment link's poster names these."""
    async with cashier.uow.read() as conn:
        rows = await list_channels(conn, merchant_id, enabled_only=True, mode=mode_of(livemode))
    return [
        row.channel
        for row in rows
        if row.channel in CHANNELS
        and row.channel in rules.PAGE_SCENES
        and (allowed_methods is None or row.channel in allowed_methods)
        and currency in CHANNELS[row.channel].currencies
    ]


async def available_methods(cashier: Cashier, row: Any, *, scene: str) -> list[str]:
    """The merchant's enabled channels the session allows, that take its currency and this page scene (the
    wallet always with its own), and for which routing has a route for this merchant and amount (routing
    unreachable: the merchant's own channels, as for every payment)."""
    offered: list[str] = []
    for channel in await page_methods(
        cashier, row.merchant_id, allowed_methods=row.allowed_methods, currency=row.currency, livemode=row.livemode
    ):
        page_scene = rules.channel_scene(channel, scene)
        if page_scene not in rules.PAGE_SCENES[channel] or PaymentScene(page_scene) not in CHANNELS[channel].scenes:
            continue
        decided = await cashier.routing.decide(
            {
                "payment_id": f"{row.id}.probe",
                "merchant_id": row.merchant_id,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "method": METHOD_OF_CHANNEL.get(channel, channel),
                "scene": page_scene,
                "payer_client": "other",
            }
        )
        if decided is None or any(c.channel == channel for c in decided):
            offered.append(channel)
    return offered


async def start_payment(
    cashier: Cashier,
    token: str,
    *,
    method: str,
    scene: str,
    payer: dict[str, Any],
    request_id: str,
    oauth: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Start (or return) the page's payment with `method` in `scene`. The same request id, or the same method
    and scene while that payment is live, answers the live payment (a double click, a reload); another
    method closes the live one first. `oauth` (code, state): the payer came back from the app's authorisation;
    the cashier redeems the code for the payer (flows/checkout_oauth.py) when the payment is started."""
    if method == "wallet" or scene == "wallet":
        raise Problem(rules.CHECKOUT_METHOD_NOT_AVAILABLE, "the wallet is paid by a signed-in user")
    resolve = None
    if oauth is not None:
        request_id, resolve = oauth_payer(cashier, token, channel=method, code=oauth[0], state=oauth[1])
    row = await _by_token(cashier, token)
    await _begin(
        cashier, row, token, method=method, scene=scene, payer=payer, request_id=request_id, resolve_payer=resolve
    )
    return await page_view(cashier, token)


async def pay_with_wallet(cashier: Cashier, token: str, *, user_id: str, request_id: str) -> dict[str, Any]:
    """The signed-in payer pays from their wallet: a hold, then its posting (the PIN was checked by the
    gateway before this call, as for every money-out of My Wallet)."""
    row = await _by_token(cashier, token)
    if row.wallet_holder_id is not None and row.wallet_holder_id != user_id:
        raise Problem(PAYER_MISMATCH, "this checkout is for another wallet holder")
    payment_id = await _begin(
        cashier, row, token, method="wallet", scene="wallet", payer={"user_id": user_id}, request_id=request_id
    )
    await confirm_wallet_payment(cashier, payment_id=payment_id, payer_user_id=user_id, merchant_id=None)
    return await page_view(cashier, token)


async def pay_as_user(
    cashier: Cashier,
    token: str,
    *,
    user_id: str,
    method: str,
    scene: str,
    request_id: str,
    coupon_id: str | None,
    client_ip: str | None,
) -> dict[str, Any]:
    """A signed-in payer (the user the gateway names) pays by a channel with one of their coupons: the payment is
    the page's usual one, named after the user, and the cashier locks the coupon with marketing for it (priced on
    the session's amount, its merchant and this method), confirms it on success and releases it on failure or
    close. The channel is asked for the discounted amount."""
    if method == "wallet" or scene == "wallet":
        raise Problem(rules.CHECKOUT_METHOD_NOT_AVAILABLE, "the wallet is paid by PIN (no coupon on a wallet payment)")
    row = await _by_token(cashier, token)
    if row.wallet_holder_id is not None and row.wallet_holder_id != user_id:
        raise Problem(PAYER_MISMATCH, "this checkout is for another payer")
    payer: dict[str, Any] = {"user_id": user_id, **({"client_ip": client_ip} if client_ip else {})}
    await _begin(
        cashier, row, token, method=method, scene=scene, payer=payer, request_id=request_id, coupon_id=coupon_id
    )
    return await page_view(cashier, token)


async def _begin(
    cashier: Cashier,
    row: Any,
    token: str,
    *,
    method: str,
    scene: str,
    payer: dict[str, Any],
    request_id: str,
    resolve_payer: Callable[[Any], Awaitable[dict[str, Any]]] | None = None,
    coupon_id: str | None = None,
) -> str:
    if row.status != rules.SessionStatus.OPEN or cashier.clock() >= row.expires_at:
        raise Problem(rules.CHECKOUT_SESSION_NOT_OPEN, f"the session is {row.status}", status=row.status)
    await refuse_if_suspended(cashier, row.merchant_id)  # pages and links of a suspended merchant take no payment
    if method not in await available_methods(cashier, row, scene=scene):
        raise Problem(rules.CHECKOUT_METHOD_NOT_AVAILABLE, f"{method} is not offered here for scene {scene}")
    row = await _recover_unrecorded(cashier, row)
    live = None
    if row.payment_id is not None:
        async with cashier.uow.read() as conn:
            live = await get_payment_unscoped(conn, row.payment_id)
        if live is not None and live.status in LIVE:
            same = row.payment_request_id == request_id or (row.payment_method == method and row.payment_scene == scene)
            if same:
                return str(live.id)
        else:
            live = None
    elif row.payment_seq > 0 and not _claim_stale(cashier, row):
        if row.payment_request_id == request_id:
            raise Problem(rules.CHECKOUT_PAYMENT_IN_PROGRESS, "this payment is being set up; retry shortly")
        raise Problem(rules.CHECKOUT_PAYMENT_IN_PROGRESS, "another payment of this session is being set up")
    if resolve_payer is not None:  # a new payment only: the payer's identity from the channel (OAuth code), asked
        payer = {**payer, **await resolve_payer(row)}  # before the live payment is closed (a bad code closes nothing)
    if live is not None:
        try:
            await close_payment(cashier, merchant_id=row.merchant_id, payment_id=live.id)
        except Problem as exc:
            if exc.spec is PAYMENT_NOT_CLOSABLE:  # it has just been paid: the session completes
                row = await settle(cashier, row)
                raise Problem(
                    rules.CHECKOUT_SESSION_NOT_OPEN, f"the session is {row.status}", status=row.status
                ) from exc
            raise
    seq = row.payment_seq + 1
    async with cashier.uow.begin() as tx:
        claimed = await store.claim_payment_slot(
            tx.conn, session_id=row.id, seq=seq, method=method, scene=scene, request_id=request_id, now=cashier.clock()
        )
    if not claimed:
        raise Problem(rules.CHECKOUT_PAYMENT_IN_PROGRESS, "another payment of this session started meanwhile")
    draft = PaymentDraft(
        merchant_order_no=rules.payment_order_no(row.id, seq),
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description[:DESCRIPTION_MAX_CHARS],
        scene=PaymentScene(rules.channel_scene(method, scene)),
        payer=payer,
        expire_at=row.expires_at,
        notify_url=None,
        return_url=f"{pages_origin(cashier)}/checkout/{token}/result",
        metadata={**row.metadata, "checkout_session_id": row.id, "checkout_order_no": row.merchant_order_no},
        preferred_channels=(method,),
        excluded_channels=(),
        livemode=row.livemode,
        coupon_id=coupon_id,
    )
    try:
        result = await create_payment(cashier, merchant_id=row.merchant_id, draft=draft)
    except Problem as exc:
        failed_id = exc.extensions.get("payment_id")
        if failed_id:  # the payment exists and failed: the page shows it and offers another method
            async with cashier.uow.begin() as tx:
                await store.record_payment(tx.conn, session_id=row.id, seq=seq, payment_id=str(failed_id))
        raise
    payment_id = str(result.payment["id"])
    async with cashier.uow.begin() as tx:
        await store.record_payment(tx.conn, session_id=row.id, seq=seq, payment_id=payment_id)
    return payment_id


async def _recover_unrecorded(cashier: Cashier, row: Any) -> Any:
    """A slot claimed whose payment was created but not recorded (the process died in between): record it."""
    if row.payment_id is not None or row.payment_seq == 0:
        return row
    async with cashier.uow.read() as conn:
        payment = await get_payment_by_order_no(
            conn, merchant_id=row.merchant_id, merchant_order_no=rules.payment_order_no(row.id, row.payment_seq)
        )
    if payment is None:
        return row
    async with cashier.uow.begin() as tx:
        await store.record_payment(tx.conn, session_id=row.id, seq=row.payment_seq, payment_id=payment.id)
        current = await store.get_session_unscoped(tx.conn, row.id)
    return current


# ---- embedding (juhe.js) --------------------------------------------------------------------------------
async def set_checkout_origins(cashier: Cashier, *, merchant_id: str, origins: list[str]) -> dict[str, Any]:
    """The platform registers the origins a merchant embeds the checkout on (deduplicated, order kept)."""
    unique = list(dict.fromkeys(origin.rstrip("/").lower() for origin in origins))
    async with cashier.uow.begin() as tx:
        row = await store_merchants.set_checkout_origins(tx.conn, merchant_id, unique)
    if row is None:
        raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} is not set up in the cashier")
    return {"merchant_id": merchant_id, "origins": list(row.checkout_origins)}


async def read_checkout_origins(cashier: Cashier, *, merchant_id: str) -> dict[str, Any]:
    async with cashier.uow.read() as conn:
        row = await get_merchant(conn, merchant_id)
    if row is None:
        raise Problem(MERCHANT_NOT_FOUND, f"merchant {merchant_id} is not set up in the cashier")
    return {"merchant_id": merchant_id, "origins": list(row.checkout_origins)}
