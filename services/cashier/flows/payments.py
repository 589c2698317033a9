"""Payments: create (route, attempt, fail over), close, expire, and poll processing attempts."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from libs.common.db import Tx, new_envelope, outbox_row
from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.faults import crash_point
from libs.common.ids import new_id
from libs.common.logging import get_logger
from libs.common.modes import mode_of
from services.cashier.clients.marketing import CouponHeld, CouponLock
from services.cashier.clients.routing import Candidate
from services.cashier.connectors.base import (
    ChannelError,
    ChannelUnavailable,
    Connector,
    InvalidSignature,
    PrepayRequest,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.registry import CHANNELS
from services.cashier.domain.errors import (
    CHANNEL_REFUSED,
    CHANNEL_UNAVAILABLE,
    COUPON_NOT_ALLOWED,
    DUPLICATE_MERCHANT_ORDER,
    INSUFFICIENT_FUNDS,
    NO_ROUTE_AVAILABLE,
    PAYMENT_NOT_CLOSABLE,
    PAYMENT_NOT_FOUND,
    PROFIT_SHARING_UNSUPPORTED,
    UNSUPPORTED_CURRENCY,
    UNSUPPORTED_SCENE,
    WALLET_NOT_FOUND,
)
from services.cashier.domain.payments import (
    ORDER_EXISTS_CODES,
    AttemptStatus,
    PaymentPurpose,
    PaymentScene,
    PaymentStatus,
    out_trade_no_of,
    platform_fee_of,
    poll_delay_seconds,
    request_fingerprint,
    resolve_expire_at,
    wallet_out_trade_no,
)
from services.cashier.domain.records import AttemptRecord, PaymentRecord
from services.cashier.events import PAYMENT_ATTEMPT_FAILED, PAYMENT_CREATED, PAYMENTS_TOPIC, payment_event_data
from services.cashier.flows import payment_codes
from services.cashier.flows.context import Cashier
from services.cashier.flows.outcomes import apply_trade_result, close_locally, publish_payment_final
from services.cashier.flows.routing import PAYER_CLIENTS, route_candidates
from services.cashier.flows.views import payment_view
from services.cashier.store.merchants import read_for_create
from services.cashier.store.payments import (
    advance_deadline,
    claim_attempt_to_redrive,
    claim_attempts_to_poll,
    claim_attempts_to_redrive,
    get_attempt,
    get_payment,
    get_payment_by_order_no,
    get_payment_unscoped,
    insert_attempt,
    insert_payment_with_attempt,
    list_attempts,
    list_expired_payments,
    mark_attempt_closed,
    mark_attempt_refused,
    mark_payment_failed,
    mark_processing,
    payment_to_insert,
    point_payment_at_attempt,
    schedule_attempt_poll,
)

log = get_logger("juhe.cashier.payments")

# The payment and its attempt as `_mark_processing` wrote them: the channel took the order.
Processing = tuple[PaymentRecord, AttemptRecord]

FAILURE_MESSAGE_MAX_CHARS = 500
# A prepay call may use this share of the attempt's lease (redrive_grace_seconds); the rest is for writing its
# answer, so a re-drive (which starts only once the lease has passed) never overlaps a live driver.
PREPAY_SHARE_OF_LEASE = 0.6
REDRIVE_WAIT_POLL_SECONDS = 0.1  # a retried create re-reads its payment this often while another driver holds it


@dataclass(frozen=True, slots=True)
class PaymentDraft:
    """A validated create request (the API schema maps onto this)."""

    merchant_order_no: str
    amount_minor: int
    currency: str
    description: str
    scene: PaymentScene
    payer: dict[str, Any]
    expire_at: datetime | None
    notify_url: str | None
    return_url: str | None
    metadata: dict[str, str]
    preferred_channels: tuple[str, ...]
    excluded_channels: tuple[str, ...]
    purpose: PaymentPurpose = PaymentPurpose.PAYMENT
    wallet_holder_id: str | None = None
    split: tuple[tuple[str, int], ...] | None = None  # (receiver_id, amount_minor)
    profit_sharing: bool = False
    coupon_id: str | None = None  # the payer's coupon to redeem (marketing locks it and prices the discount)
    coupon_code: str | None = None  # or the same coupon named by its code (never stored: only in the fingerprint)
    # Test or live (docs/test-mode.md): the caller's key mode. Only configs of the same mode are candidates. Not in
    # the fingerprint: an order number reused in the other mode is refused by `_replay` without naming the payment.
    livemode: bool = False

    def fingerprint(self) -> str:
        fields = {k: getattr(self, k) for k in self.__slots__ if k != "livemode"}
        fields["expire_at"] = self.expire_at.isoformat() if self.expire_at else None
        # The split-check fields (docs/contracts.md §1) count only when set, so payments created before them keep
        # their fingerprint.
        for name, default in _FINGERPRINT_DEFAULTS.items():
            if fields[name] == default:
                del fields[name]
        return request_fingerprint(fields)

    @property
    def auth_code(self) -> str | None:
        """The scanned 付款码 of a payment_code payment (kept in `payer`)."""
        code = self.payer.get("auth_code") if self.scene is PaymentScene.PAYMENT_CODE else None
        return str(code) if code else None

    def split_json(self) -> list[dict[str, Any]] | None:
        if self.split is None:
            return None
        return [{"receiver_id": receiver, "amount_minor": amount} for receiver, amount in self.split]


_FINGERPRINT_DEFAULTS: dict[str, Any] = {
    "purpose": PaymentPurpose.PAYMENT,
    "wallet_holder_id": None,
    "split": None,
    "profit_sharing": False,
    "coupon_id": None,
    "coupon_code": None,
}


@dataclass(frozen=True, slots=True)
class CreateResult:
    payment: dict[str, Any]
    created: bool  # False: an identical earlier request; its payment is returned unchanged


async def read_payment(
    cashier: Cashier, *, merchant_id: str, payment_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    """The payment with its attempts; with `livemode`, 404 for a payment of the other mode."""
    async with cashier.uow.read() as conn:
        payment = await get_payment(conn, merchant_id=merchant_id, payment_id=payment_id, livemode=livemode)
        if payment is None:
            raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
        return payment_view(payment, await list_attempts(conn, payment.id))


async def _replay(
    cashier: Cashier,
    merchant_id: str,
    draft: PaymentDraft,
    fingerprint: str,
    *,
    channels_into: list[Any] | None = None,
) -> CreateResult | None:
    """The answer to a repeated create (None: this order number is new). With `channels_into`, a new order's read
    also fills it with the merchant's enabled configs of the payment's mode: the replay check and the channel list
    are the create's one read (one statement, `read_for_create`), and the configs' rows give the prepay its
    connector without reading them again (docs/performance.md)."""
    async with cashier.uow.read() as conn:
        if channels_into is None:
            existing = await get_payment_by_order_no(
                conn, merchant_id=merchant_id, merchant_order_no=draft.merchant_order_no
            )
        else:  # test payments only at test (sandbox) configs, live only at live ones
            existing_id, configs = await read_for_create(
                conn, merchant_id=merchant_id, merchant_order_no=draft.merchant_order_no, mode=mode_of(draft.livemode)
            )
            if existing_id is None:
                channels_into.extend(configs)
                return None
            existing = await get_payment(conn, merchant_id=merchant_id, payment_id=existing_id)
        if existing is None:
            return None
        if existing.livemode != draft.livemode:  # never show a payment of the other mode, not even its id
            raise Problem(
                DUPLICATE_MERCHANT_ORDER,
                f"merchant order {draft.merchant_order_no} was already used in {mode_of(existing.livemode)} mode",
            )
        if existing.request_sha256 != fingerprint:
            raise Problem(
                DUPLICATE_MERCHANT_ORDER,
                f"merchant order {draft.merchant_order_no} already exists with another request",
                payment_id=existing.id,
            )
        if existing.status != PaymentStatus.CREATED:
            return CreateResult(payment_view(existing, await list_attempts(conn, existing.id)), created=False)
    # Still `created`: its first driver died before recording the channel's answer, or is still waiting
    # for it. Drive it now (or wait for whoever does), so the retry gets a payable payment.
    await _redrive_now(cashier, existing.id)
    async with cashier.uow.read() as conn:
        current = await get_payment_unscoped(conn, existing.id)
        assert current is not None
        view = payment_view(current, await list_attempts(conn, existing.id))
    if current.status == PaymentStatus.CREATED:
        raise Problem(
            CHANNEL_UNAVAILABLE,
            "the payment is still being set up at the channel; retry shortly",
            payment_id=current.id,
        )
    return CreateResult(view, created=False)


async def _candidates(
    cashier: Cashier, merchant_id: str, draft: PaymentDraft, payment_id: str, configs: Sequence[Any]
) -> list[Candidate]:
    """Routing's (or the fallback) candidates, restricted to what can actually take this payment.

    `configs` are the merchant's enabled channel configs of the payment's mode (read with the replay check).
    Scene and currency are checked on the merchant's channels before routing is asked, so an
    impossible payment is refused with a precise code and nothing created.
    """
    code_channel = payment_codes.code_channel(draft.auth_code) if draft.auth_code else None
    mode = mode_of(draft.livemode)
    channels = [row.channel for row in configs if row.channel in CHANNELS]
    if draft.preferred_channels:
        channels = [c for c in draft.preferred_channels if c in channels]
    channels = [c for c in channels if c not in draft.excluded_channels]
    if code_channel is not None:  # the code decides the channel: only its route and fee are asked for
        channels = [c for c in channels if c == code_channel]
    if not channels:
        raise Problem(
            NO_ROUTE_AVAILABLE,
            f"merchant {merchant_id} has no eligible {mode} channel configuration ({mode} keys use only {mode} "
            "configurations: docs/test-mode.md)",
            livemode=draft.livemode,
        )
    by_scene = [c for c in channels if draft.scene in CHANNELS[c].scenes or c == code_channel]
    if draft.scene in (PaymentScene.JSAPI, PaymentScene.MINI_PROGRAM):
        by_scene = _payer_can_use(draft.payer, by_scene)
    if not by_scene:
        raise Problem(
            UNSUPPORTED_SCENE, f"no channel of this merchant takes scene {draft.scene.value}", channels=channels
        )
    usable = [c for c in by_scene if draft.currency in CHANNELS[c].currencies]
    if not usable:
        raise Problem(UNSUPPORTED_CURRENCY, f"no channel of this merchant takes {draft.currency}")
    if draft.profit_sharing:
        usable = [c for c in usable if CHANNELS[c].profit_sharing]
        if not usable:
            raise Problem(
                PROFIT_SHARING_UNSUPPORTED,
                "no channel of this merchant for this scene can freeze funds for profit sharing",
            )
    client_type = draft.payer.get("client_type")
    context = {
        "payment_id": payment_id,
        "merchant_id": merchant_id,
        "amount_minor": draft.amount_minor,
        "currency": draft.currency,
        "scene": payment_codes.ROUTING_SCENE if code_channel else draft.scene.value,
        "payer_client": client_type if client_type in PAYER_CLIENTS else "other",
    }
    candidates = await route_candidates(cashier.routing, channels=usable, context=context)
    if not candidates:
        raise Problem(NO_ROUTE_AVAILABLE, "routing found no route for this payment")
    # A payment code belongs to one channel and one payer: one attempt, never a fail-over.
    return candidates[: 1 if code_channel else cashier.settings.attempts_per_payment_max]


# Which payer identity each channel's in-app (JSAPI / mini-program) payment needs.
# An Alipay buyer_id is its user_id (2088…) or an Alipay open id; a WeChat openid never fits Alipay.
_IN_APP_PAYER_KEYS: dict[str, tuple[str, ...]] = {"wechatpay": ("openid",), "alipay": ("buyer_id",)}


def _payer_can_use(payer: dict[str, Any], channels: list[str]) -> list[str]:
    """The channels whose in-app payment this payer identity can pay (WeChat: openid; Alipay: buyer_id)."""
    usable = [c for c in channels if any(payer.get(key) for key in _IN_APP_PAYER_KEYS.get(c, ()))]
    if not usable:
        raise Problem(
            VALIDATION_FAILED,
            "an in-app payment needs the payer: payer.openid (WeChat, from its OAuth) "
            "or payer.buyer_id (Alipay, from alipay.system.oauth.token)",
            channels=channels,
        )
    return usable


def _in_app_payer(channel: str, payer: dict[str, Any]) -> str | None:
    return next((str(payer[k]) for k in _IN_APP_PAYER_KEYS.get(channel, ("openid",)) if payer.get(k)), None)


async def create_payment(cashier: Cashier, *, merchant_id: str, draft: PaymentDraft) -> CreateResult:
    """Three units of work on the usual path: one read (replay check and channel configs, which also give the
    prepay its connector), the transaction that stores the payment, its first attempt and `payment.created`, and
    the one recording the channel's answer; the channel's prepay runs between the last two, outside any
    transaction. The answer is built from the rows that last transaction returned; a fail-over, a failure or a
    payment code reads the payment again."""
    fingerprint = draft.fingerprint()
    configs: list[Any] = []
    replay = await _replay(cashier, merchant_id, draft, fingerprint, channels_into=configs)
    if replay is not None:
        return replay
    now = cashier.clock()
    expire_at = resolve_expire_at(
        now=now,
        requested=draft.expire_at,
        default_seconds=cashier.settings.payment_expiry_default_seconds,
        max_seconds=cashier.settings.payment_expiry_max_seconds,
    )
    if draft.scene is PaymentScene.PAYMENT_CODE:  # the payer is at the counter: the deadline is short
        expire_at = min(expire_at, now + timedelta(seconds=cashier.settings.payment_code_deadline_seconds))
    payment_id = new_id("pay")
    lock: CouponLock | None = None
    if draft.coupon_id is not None or draft.coupon_code is not None:
        try:
            lock = await _lock_or_take_over(cashier, merchant_id, draft, payment_id, expire_at)
        except Problem:
            # A concurrent identical create may hold the coupon for its own payment: answer with that one.
            replay = await _replay(cashier, merchant_id, draft, fingerprint)
            if replay is not None:
                return replay
            raise
    try:
        payment, attempt = await _create_locked(
            cashier, merchant_id, draft, fingerprint, payment_id, expire_at, lock, configs
        )
    except Exception:
        if lock is not None:  # nothing was created: give the coupon back now rather than when the lock runs out
            await cashier.marketing.release(lock.redemption_id)
        raise
    if payment is None:  # a concurrent identical order number won the insert
        if lock is not None:
            await cashier.marketing.release(lock.redemption_id)
        replay = await _replay(cashier, merchant_id, draft, fingerprint)
        assert replay is not None
        return replay
    processing = await _drive(cashier, payment, attempt, configs) if attempt is not None else None
    if processing is not None and processing[1].seq == 1:  # its one attempt, as the prepay left it: nothing to read
        return CreateResult(payment_view(processing[0], [processing[1]]), created=True)
    async with cashier.uow.read() as conn:
        final = await get_payment_unscoped(conn, payment.id)
        assert final is not None
        view = payment_view(final, await list_attempts(conn, payment.id))
    if final.status == PaymentStatus.FAILED:
        spec = _FAILURE_SPECS.get(final.failure_code or "", CHANNEL_REFUSED)
        raise Problem(spec, final.failure_message or spec.title, payment_id=final.id, payment=_jsonable(view))
    return CreateResult(view, created=True)


async def _lock_coupon(
    cashier: Cashier, merchant_id: str, draft: PaymentDraft, payment_id: str, expire_at: datetime
) -> CouponLock:
    """Ask marketing to lock the payer's coupon for this payment (before anything is created): its refusal
    (expired, not applicable, threshold not met, used, locked by another payment) is the merchant's answer.

    The payment method is told only when the request pins one channel (a payment code, or a single preferred
    channel): a coupon limited to some methods is refused otherwise rather than redeemed on the wrong one."""
    user_id = draft.payer.get("user_id")
    if not user_id or draft.purpose is not PaymentPurpose.PAYMENT or draft.scene is PaymentScene.WALLET:
        raise Problem(
            COUPON_NOT_ALLOWED,
            "a coupon is redeemed by a named payer (payer.user_id) on a channel "
            "purchase (purpose payment, not scene wallet)",
        )
    code_channel = payment_codes.code_channel(draft.auth_code) if draft.auth_code else None
    pinned = code_channel or (draft.preferred_channels[0] if len(draft.preferred_channels) == 1 else None)
    lock_seconds = int((expire_at - cashier.clock()).total_seconds()) + cashier.settings.coupon_lock_margin_seconds
    return await cashier.marketing.lock(
        payment_id=payment_id,
        coupon_id=draft.coupon_id,
        coupon_code=draft.coupon_code,
        user_id=str(user_id),
        merchant_id=merchant_id,
        scene=draft.scene.value,
        payment_method=pinned,
        order_amount_minor=draft.amount_minor,
        currency=draft.currency,
        lock_seconds=max(COUPON_LOCK_SECONDS_MIN, lock_seconds),
    )


COUPON_LOCK_SECONDS_MIN = 10  # marketing's own floor for a lock


async def _lock_or_take_over(
    cashier: Cashier, merchant_id: str, draft: PaymentDraft, payment_id: str, expire_at: datetime
) -> CouponLock:
    """Lock the coupon; when it is held by a payment this cashier never created (an earlier create died between
    its lock and its insert: the merchant's retry lands here), release that orphan lock and lock once more.

    A lock younger than `coupon_orphan_lock_seconds` is left alone: its creator may still be on its way to the
    insert (routing, split check), which takes seconds."""
    try:
        return await _lock_coupon(cashier, merchant_id, draft, payment_id, expire_at)
    except CouponHeld as held:
        redemption_id, holder_payment_id, locked_at = held.held_by
        young = locked_at > cashier.clock() - timedelta(seconds=cashier.settings.coupon_orphan_lock_seconds)
        async with cashier.uow.read() as conn:
            exists = bool(holder_payment_id) and await get_payment_unscoped(conn, holder_payment_id) is not None
        if young or exists or not await cashier.marketing.release(redemption_id):
            raise
        log.warning(
            "released an orphan coupon lock (its payment was never created)",
            redemption_id=redemption_id,
            payment_id=holder_payment_id,
        )
    return await _lock_coupon(cashier, merchant_id, draft, payment_id, expire_at)


async def _create_locked(
    cashier: Cashier,
    merchant_id: str,
    draft: PaymentDraft,
    fingerprint: str,
    payment_id: str,
    expire_at: datetime,
    lock: CouponLock | None,
    configs: Sequence[Any],
) -> tuple[PaymentRecord | None, AttemptRecord | None]:
    """Route, check the split and insert the payment with its first attempt. With a coupon, everything from
    here on (routing's fee, the split, the platform fee, the channel's order) is about the discounted amount
    the channel collects; the order's own amount and the discount are recorded beside it."""
    order_amount = draft.amount_minor
    if lock is not None:
        draft = dataclasses.replace(draft, amount_minor=lock.payable_minor)
    candidates = await _candidates(cashier, merchant_id, draft, payment_id, configs)
    if draft.scene is PaymentScene.WALLET and not draft.payer.get("user_id"):
        raise Problem(VALIDATION_FAILED, "a wallet payment needs payer.user_id (the paying user)")
    if draft.split is not None:  # settlement accepts the split, or nothing is created
        await cashier.settlement.check_split(
            merchant_id=merchant_id,
            amount_minor=draft.amount_minor,
            currency=draft.currency,
            split=draft.split,
            business_line=draft.metadata.get("business_line", ""),
        )
    first_attempt_id = new_id("att")
    payment_values = {
        "id": payment_id,
        "merchant_id": merchant_id,
        "merchant_order_no": draft.merchant_order_no,
        "request_sha256": fingerprint,
        "amount_minor": draft.amount_minor,
        "currency": draft.currency,
        "description": draft.description,
        "scene": draft.scene.value,
        "payer": draft.payer,
        "notify_url": draft.notify_url,
        "return_url": draft.return_url,
        "metadata": draft.metadata,
        "livemode": draft.livemode,
        "status": PaymentStatus.CREATED.value,
        "expire_at": expire_at,
        # A top-up is the platform collecting for a user's wallet (ledger §3.7): no merchant to charge.
        "platform_fee_minor": 0
        if draft.purpose is PaymentPurpose.WALLET_TOPUP
        else platform_fee_of(draft.amount_minor, cashier.settings.platform_fee_rate_bps),
        "purpose": draft.purpose.value,
        "wallet_holder_id": draft.wallet_holder_id,
        "split": draft.split_json(),
        "profit_sharing": draft.profit_sharing,
        "candidates": [candidate_json(c) for c in candidates],
        # Inserted pointing at its first attempt (inserted by the same statement): no UPDATE to point it.
        "current_attempt_id": first_attempt_id,
        **_route_fields(candidates[0]),
        # Only with a coupon: a None here would be stored as JSON null, not SQL NULL.
        **(
            {"order_amount_minor": order_amount, "discount_minor": lock.discount_minor, "coupon": lock.record()}
            if lock is not None
            else {}
        ),
    }
    # `payment.created` is built from the record the insert will write (`payment_to_insert`), so the insert's own
    # statement writes its outbox row: the payment, its first attempt and the event are ONE statement, all or nothing
    # (a concurrent identical order number: none of them), atomic and durable on its own in autocommit: one round trip
    # where BEGIN, the insert, the outbox INSERT and COMMIT were four (docs/performance.md, "Sixth pass"). The attempt
    # commits with the payment: a `created` payment always has a live attempt, which is what the re-drive picks up if
    # we die before recording the channel's answer.
    data = payment_event_data(payment_to_insert(payment_values, now=cashier.clock()))
    event = new_envelope(cashier.uow.source, type=PAYMENT_CREATED, subject=payment_id, data=data)
    async with cashier.uow.autocommit() as conn:
        return await insert_payment_with_attempt(
            conn,
            payment_values,
            _attempt_values(cashier, payment_id, merchant_id, candidates[0], seq=1, attempt_id=first_attempt_id),
            event=outbox_row(PAYMENTS_TOPIC, event),
        ) or (None, None)  # None: a concurrent identical order number won the insert


_FAILURE_SPECS = {
    "channel_unavailable": CHANNEL_UNAVAILABLE,
    "insufficient_funds": INSUFFICIENT_FUNDS,  # the wallet hold was refused: nothing is reserved
    "wallet_not_found": WALLET_NOT_FOUND,
}


def _jsonable(view: dict[str, Any]) -> dict[str, Any]:
    from fastapi.encoders import jsonable_encoder

    return dict(jsonable_encoder(view))


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {**_route_fields(candidate), "source": candidate.source}


def _next_candidate(payment: PaymentRecord, seq: int) -> Candidate | None:
    """The candidate after the one attempt `seq` used (attempt n took candidates[n-1])."""
    stored = payment.candidates or []
    if seq >= len(stored):
        return None
    entry = stored[seq]
    return Candidate(
        channel=entry["channel"],
        route_id=entry.get("route_id"),
        fee_minor=entry.get("fee_minor"),
        fee_rate_bps=entry.get("fee_rate_bps"),
        source=entry.get("source", "fallback"),
    )


async def _point_at_new_attempt(
    tx: Tx, cashier: Cashier, payment: PaymentRecord, candidate: Candidate, *, seq: int
) -> AttemptRecord | None:
    """Insert attempt `seq` and point the (still `created`) payment at it; None if the payment moved on.

    The attempt's next_poll_at is its driver's lease: until then nobody else prepays it.
    """
    attempt_id = new_id("att")
    pointed = await point_payment_at_attempt(
        tx.conn,
        payment.id,
        attempt_id=attempt_id,
        channel=candidate.channel,
        route_id=candidate.route_id,
        fee_minor=candidate.fee_minor,
        fee_rate_bps=candidate.fee_rate_bps,
    )
    if pointed is None:
        return None  # closed (by the merchant or expiry) while we were failing over
    return await insert_attempt(
        tx.conn, _attempt_values(cashier, payment.id, payment.merchant_id, candidate, seq=seq, attempt_id=attempt_id)
    )


def _route_fields(candidate: Candidate) -> dict[str, Any]:
    """What a payment records of the candidate its current attempt uses."""
    return {
        "channel": candidate.channel,
        "route_id": candidate.route_id,
        "fee_minor": candidate.fee_minor,
        "fee_rate_bps": candidate.fee_rate_bps,
    }


def _attempt_values(
    cashier: Cashier, payment_id: str, merchant_id: str, candidate: Candidate, *, seq: int, attempt_id: str
) -> dict[str, Any]:
    """Attempt `seq` of the payment on `candidate`, `created` and leased to its driver until next_poll_at."""
    return {
        "id": attempt_id,
        "payment_id": payment_id,
        "merchant_id": merchant_id,
        "seq": seq,
        **_route_fields(candidate),
        "out_trade_no": (
            wallet_out_trade_no(payment_id) if candidate.channel == "wallet" else out_trade_no_of(attempt_id)
        ),
        "status": AttemptStatus.CREATED.value,
        "next_poll_at": cashier.clock() + timedelta(seconds=cashier.settings.redrive_grace_seconds),
    }


def _prepay_request(cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord) -> PrepayRequest:
    """The prepay of one attempt, built from the stored payment only, so a re-drive after a crash sends the
    channel exactly the same parameters (channels answer an identical repeat with the same order)."""
    payer = dict(payment.payer or {})
    return PrepayRequest(
        out_trade_no=attempt.out_trade_no,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        description=payment.description,
        scene=payment.scene,
        notify_url=cashier.notify_url(attempt.channel, payment.merchant_id),
        expire_at=payment.expire_at,
        payer_openid=_in_app_payer(attempt.channel, payer),
        payer_client_ip=payer.get("client_ip"),
        return_url=payment.return_url,
        merchant_id=payment.merchant_id,
        payer_user_id=payer.get("user_id"),
        platform_fee_minor=payment.platform_fee_minor,
        profit_sharing=payment.profit_sharing,
    )


async def _drive(
    cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord, configs: Sequence[Any] = ()
) -> Processing | None:
    """Prepay `attempt` (committed, `created`, ours by its lease) and fail over until a channel takes it; each
    attempt's connector from `configs` (the create's read of the merchant's configs) when it is there.

    Returns the payment and attempt rows as this drive left them `processing` (the create answers from them);
    None when it ended otherwise (failed, answered first by a concurrent driver, a payment code)."""
    while True:
        successor, processing = await _prepay_once(cashier, payment, attempt, configs)
        if successor is None:
            return processing
        attempt = successor


async def _prepay_once(
    cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord, configs: Sequence[Any]
) -> tuple[AttemptRecord | None, Processing | None]:
    """One prepay call and what follows from it: the next attempt to drive (after a fail-over), else None and
    the rows `_mark_processing` wrote (None if it wrote nothing).

    Every state change is a compare-and-set on the attempt still being `created`: when a concurrent driver
    (the worker and a retrying client after a lease ran out) already recorded an answer, ours changes
    nothing and we stop, so one attempt never yields two outcomes nor two successors.
    """
    if payment_codes.is_payment_code(payment):
        await _charge_code_once(cashier, payment, attempt, configs)
        return None, None
    request = _prepay_request(cashier, payment, attempt)
    started = time.perf_counter()
    failure: tuple[str, str, bool] | None = None
    try:
        connector = await _connector(cashier, payment, attempt, configs)
        crash_point("cashier.prepay.before_call")
        async with asyncio.timeout(cashier.settings.redrive_grace_seconds * PREPAY_SHARE_OF_LEASE):
            result = await connector.prepay(request)
        crash_point("cashier.prepay.after_call")
    except TimeoutError:
        failure = ("channel_unavailable", "no prepay answer within the attempt's lease", True)
    except ChannelUnavailable as exc:
        failure = ("channel_unavailable", str(exc), True)
    except InvalidSignature as exc:
        failure = ("channel_unavailable", f"unverifiable channel answer: {exc}", True)
    except ChannelError as exc:
        failure = (exc.code, exc.message, exc.retryable)
        if exc.code in ORDER_EXISTS_CODES:  # an earlier prepay of this out_trade_no got there: ask, then reuse
            reused = await _reuse_existing_order(cashier, connector, attempt)
            if reused is None:
                return None, None  # applied, or the channel cannot say now: the lease runs out and it is re-driven
            failure = (exc.code, f"{exc.message} (channel order {reused})", True)
    except Problem as exc:  # the stored channel config cannot build a connector
        failure = ("invalid_channel_config", exc.detail, True)
    latency_ms = int((time.perf_counter() - started) * 1000)
    if failure is None:
        processing = await _mark_processing(
            cashier, payment.id, attempt.id, result.payer_action, result.channel_trade_no, latency_ms
        )
        return None, processing
    return await _fail_attempt(cashier, payment, attempt, failure, latency_ms), None


async def _connector(
    cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord, configs: Sequence[Any]
) -> Connector:
    """The attempt's connector: built from the config row the create already read (the payment's mode, the
    attempt's channel), else read by the pool (a re-drive, which read nothing before)."""
    mode = mode_of(payment.livemode)
    row = next((c for c in configs if c.channel == attempt.channel and c.mode == mode), None)
    if row is not None:
        return await cashier.connectors.for_config(row)
    return await cashier.connectors.get(payment.merchant_id, attempt.channel, livemode=payment.livemode)


async def _charge_code_once(
    cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord, configs: Sequence[Any] = ()
) -> None:
    """Charge the scanned code (payment_codes). Refused → the payment fails (no fail-over); paid → succeeded;
    anything else (password step, timeout, outage) → processing, for the poller to settle by the deadline."""
    started = time.perf_counter()
    result: TradeQueryResult | None = None
    try:
        connector = await _connector(cashier, payment, attempt, configs)
        crash_point("cashier.prepay.before_call")
        async with asyncio.timeout(cashier.settings.redrive_grace_seconds * PREPAY_SHARE_OF_LEASE):
            result = await payment_codes.charge(connector, payment_codes.code_request(payment, attempt))
        crash_point("cashier.prepay.after_call")
    except ChannelError as exc:
        if not exc.retryable:  # the channel refused the code (invalid, used, expired, balance): nothing charged
            await _fail_attempt(
                cashier, payment, attempt, (exc.code, exc.message, False), int((time.perf_counter() - started) * 1000)
            )
            return
        log.info("payment code charge outcome unknown; polling", attempt_id=attempt.id, error=repr(exc))
    except (TimeoutError, ChannelUnavailable, InvalidSignature) as exc:
        log.info("payment code charge outcome unknown; polling", attempt_id=attempt.id, error=repr(exc))
    except Problem as exc:  # the stored channel config cannot build a connector: nothing was sent
        await _fail_attempt(
            cashier,
            payment,
            attempt,
            ("invalid_channel_config", exc.detail, False),
            int((time.perf_counter() - started) * 1000),
        )
        return
    latency_ms = int((time.perf_counter() - started) * 1000)
    waiting = result is not None and result.status is TradeStatus.PENDING
    await _mark_processing(
        cashier,
        payment.id,
        attempt.id,
        payment_codes.WAITING_ACTION if waiting else None,
        result.channel_trade_no if result is not None else None,
        latency_ms,
    )
    if result is not None:
        await payment_codes.apply_charge(cashier, attempt.id, result)


async def _reuse_existing_order(cashier: Cashier, connector: Connector, attempt: AttemptRecord) -> str | None:
    """The channel already has an order for this out_trade_no and would not hand it out again. Returns None
    when handled here (paid: applied as a success; or the channel cannot answer now: left for the next
    re-drive), else the order's state, which cannot be shown to the payer (it is closed at the channel if
    still open) so the caller fails the attempt over."""
    try:
        found = await connector.query(attempt.out_trade_no)
        if found.status is TradeStatus.SUCCEEDED:
            await _mark_processing(cashier, attempt.payment_id, attempt.id, None, found.channel_trade_no, None)
            await apply_trade_result(cashier, attempt_id=attempt.id, result=found, source="poll")
            return None
        if found.status is TradeStatus.PENDING:
            await connector.close(attempt.out_trade_no)
    except (ChannelUnavailable, ChannelError, InvalidSignature) as exc:
        log.info("order exists but cannot be queried or closed now", attempt_id=attempt.id, error=repr(exc))
        return None
    return found.status.value


async def _fail_attempt(
    cashier: Cashier, payment: PaymentRecord, attempt: AttemptRecord, failure: tuple[str, str, bool], latency_ms: int
) -> AttemptRecord | None:
    """Record a failed prepay and, in the same transaction, either point the payment at the next candidate
    (returned, to drive next) or fail the payment: no crash can leave a `created` payment without a live
    attempt."""
    code, message, retryable = failure
    last_code = "channel_unavailable" if retryable else code
    last_message = f"{attempt.channel}: {code}: {message}"[:FAILURE_MESSAGE_MAX_CHARS]
    successor = None
    async with cashier.uow.begin() as tx:
        failed = await mark_attempt_refused(
            tx.conn,
            attempt,
            failure_code=code[:64],
            failure_message=message[:FAILURE_MESSAGE_MAX_CHARS],
            retryable=retryable,
            latency_ms=latency_ms,
            finished_at=cashier.clock(),
        )
        if failed is None:
            return None  # another driver recorded this attempt's answer first: its outcome stands
        current = await get_payment_unscoped(tx.conn, payment.id)
        assert current is not None
        tx.publish(
            topic=PAYMENTS_TOPIC,
            type=PAYMENT_ATTEMPT_FAILED,
            subject=payment.id,
            data=payment_event_data(current, failed, outcome="unavailable" if retryable else "refused"),
        )
        is_live = current.status == PaymentStatus.CREATED and current.current_attempt_id == attempt.id
        # A non-retryable refusal is about this payment itself: another channel would refuse it too.
        candidate = _next_candidate(current, attempt.seq) if retryable and is_live else None
        if candidate is not None and attempt.seq < cashier.settings.attempts_per_payment_max:
            successor = await _point_at_new_attempt(tx, cashier, current, candidate, seq=attempt.seq + 1)
        elif is_live:
            failed_payment = await mark_payment_failed(
                tx.conn,
                current,
                failed_at=cashier.clock(),
                failure_code=last_code[:64],
                failure_message=last_message,
            )
            if failed_payment is not None:
                await publish_payment_final(tx, cashier, failed_payment, failed, source="prepay")
    log.info("attempt failed", payment_id=payment.id, channel=attempt.channel, code=code, retryable=retryable)
    return successor


async def _mark_processing(
    cashier: Cashier,
    payment_id: str,
    attempt_id: str,
    payer_action: dict[str, Any] | None,
    channel_trade_no: str | None,
    latency_ms: int | None,
) -> Processing | None:
    """Record the channel's first answer: attempt and payment `processing`. Returns both rows as written (None
    when a concurrent driver answered first — ours changes nothing — or the payment moved on meanwhile).

    Both compare-and-sets are one statement (`mark_processing`), which is atomic on its own: run in autocommit it
    is one round trip, where BEGIN, two UPDATEs and COMMIT were four. It carries no event, so nothing else had to
    share its transaction."""
    next_poll_at = cashier.clock() + timedelta(seconds=cashier.settings.poll_initial_seconds)
    async with cashier.uow.autocommit() as conn:
        return await mark_processing(
            conn,
            payment_id=payment_id,
            attempt_id=attempt_id,
            payer_action=payer_action,
            channel_trade_no=channel_trade_no,
            latency_ms=latency_ms,
            next_poll_at=next_poll_at,
        )


# ------------------------------------------------------------------------------- re-drive after a crash


async def _redrive(cashier: Cashier, attempt: AttemptRecord) -> None:
    """Drive an attempt whose lease we just took (its earlier driver died, or stalled past the grace)."""
    async with cashier.uow.read() as conn:
        payment = await get_payment_unscoped(conn, attempt.payment_id)
    if payment is None:
        return
    if payment.status != PaymentStatus.CREATED or payment.current_attempt_id != attempt.id:
        # The payment was closed (merchant, expiry) meanwhile: this attempt will never be shown to a payer.
        # A payment the channel still takes on it arrives as a late success (closed → succeeded).
        async with cashier.uow.begin() as tx:
            await mark_attempt_closed(tx.conn, attempt, finished_at=cashier.clock())
        return
    if payment.expire_at <= cashier.clock() and not payment_codes.is_payment_code(payment):
        return  # past its expiry nobody can pay it: the expiry loop closes it (and this attempt with it)
    # A payment code's charge may have reached the channel: drive it anyway, so it becomes processing and
    # the poller reverses it (the expiry loop leaves payment codes to the poller).
    log.info("re-driving a created attempt", payment_id=payment.id, attempt_id=attempt.id, channel=attempt.channel)
    await _drive(cashier, payment, attempt)


def _lease_bounds(cashier: Cashier) -> dict[str, datetime]:
    now = cashier.clock()
    grace = timedelta(seconds=cashier.settings.redrive_grace_seconds)
    return {"now": now, "grace_before": now - grace, "lease_until": now + grace}


async def redrive_due(cashier: Cashier) -> int:
    """Worker: re-drive attempts left `created` past their lease. Returns how many were taken."""
    async with cashier.uow.autocommit() as conn:  # the claim: UPDATE … WHERE id IN (… FOR UPDATE SKIP LOCKED)
        due = await claim_attempts_to_redrive(conn, limit=cashier.settings.poll_batch_max, **_lease_bounds(cashier))
    for attempt in due:
        await _redrive(cashier, attempt)
    return len(due)


async def _redrive_now(cashier: Cashier, payment_id: str) -> None:
    """A client retries the create of a payment still `created`: drive it here once the attempt's lease has
    passed, waiting at most `redrive_wait_seconds` while someone else holds it (the caller then answers 503
    channel_unavailable, retryable)."""
    loop = asyncio.get_running_loop()
    s = cashier.settings
    deadline = loop.time() + s.redrive_wait_seconds
    while True:
        async with cashier.uow.begin() as tx:
            payment = await get_payment_unscoped(tx.conn, payment_id)
            if (
                payment is None
                or payment.status != PaymentStatus.CREATED
                or not payment.current_attempt_id
                or (payment.expire_at <= cashier.clock() and not payment_codes.is_payment_code(payment))
            ):
                return
            claimed = await claim_attempt_to_redrive(tx.conn, payment.current_attempt_id, **_lease_bounds(cashier))
            live = claimed or await get_attempt(tx.conn, payment.current_attempt_id)
        if claimed is not None:
            await _redrive(cashier, claimed)
            continue
        if live is None or live.status != AttemptStatus.CREATED or loop.time() >= deadline:
            return
        await asyncio.sleep(REDRIVE_WAIT_POLL_SECONDS)


async def close_payment(
    cashier: Cashier, *, merchant_id: str, payment_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    """Merchant close: at the channel first, then locally. A payment the payer already paid is not closed.
    With `livemode`, a payment of the other mode is 404 (docs/test-mode.md)."""
    async with cashier.uow.read() as conn:
        payment = await get_payment(conn, merchant_id=merchant_id, payment_id=payment_id, livemode=livemode)
    if payment is None:
        raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
    if payment.status == PaymentStatus.CLOSED:
        return await read_payment(cashier, merchant_id=merchant_id, payment_id=payment_id)
    if payment.status not in (PaymentStatus.CREATED, PaymentStatus.PROCESSING):
        raise Problem(PAYMENT_NOT_CLOSABLE, f"the payment is {payment.status}", payment_status=payment.status)
    if payment_codes.is_payment_code(payment):
        # Only its poller may end a payment code (it reverses the order, which also returns a payment made
        # this instant): the close brings the deadline forward and answers the payment as it is now.
        async with cashier.uow.begin() as tx:
            await advance_deadline(tx.conn, payment.id, now=cashier.clock())
        return await read_payment(cashier, merchant_id=merchant_id, payment_id=payment_id)
    outcome = await _close_at_channel(cashier, payment)
    if outcome == "unavailable":
        raise Problem(CHANNEL_UNAVAILABLE, "the channel did not confirm the close; nothing changed")
    if outcome == "open":
        await close_locally(cashier, payment_id=payment.id, reason="closed_by_merchant")
    view = await read_payment(cashier, merchant_id=merchant_id, payment_id=payment_id)
    if view["status"] != PaymentStatus.CLOSED:
        raise Problem(PAYMENT_NOT_CLOSABLE, f"the payment is {view['status']}", payment_status=view["status"])
    return view


async def _close_at_channel(cashier: Cashier, payment: PaymentRecord) -> str:
    """Close the live attempt at its channel. Returns "open" (go on and close locally), "final" (the
    channel reported a final state, already applied) or "unavailable" (try again later)."""
    if not payment.current_attempt_id:
        return "open"
    async with cashier.uow.read() as conn:
        attempt = await get_attempt(conn, payment.current_attempt_id)
    if attempt is None or attempt.status not in (AttemptStatus.CREATED, AttemptStatus.PROCESSING):
        return "open"
    try:
        connector = await cashier.connectors.get(payment.merchant_id, attempt.channel, livemode=payment.livemode)
        result = await connector.query(attempt.out_trade_no)
        if await apply_trade_result(cashier, attempt_id=attempt.id, result=result, source="close"):
            return "final"
        if result.status is TradeStatus.SUCCEEDED:
            return "final"
        try:
            await connector.close(attempt.out_trade_no)
        except ChannelError:
            # Nothing to close (Alipay precreate not scanned, WeChat already closed) or already paid:
            # ask once more so a payment that just succeeded is applied instead of closed.
            result = await connector.query(attempt.out_trade_no)
            if await apply_trade_result(cashier, attempt_id=attempt.id, result=result, source="close"):
                return "final"
            if result.status is TradeStatus.SUCCEEDED:
                return "final"
    except (ChannelUnavailable, InvalidSignature, ChannelError, Problem) as exc:
        log.warning("close at channel failed", payment_id=payment.id, error=repr(exc))
        return "unavailable"
    return "open"


async def expire_due(cashier: Cashier) -> int:
    """Close payments past their expiry, at the channel and locally. Returns how many were handled."""
    async with cashier.uow.read() as conn:
        due = await list_expired_payments(conn, now=cashier.clock(), limit=cashier.settings.expiry_batch_max)
    handled = 0
    for payment in due:
        outcome = await _close_at_channel(cashier, payment)
        if outcome == "open":
            await close_locally(cashier, payment_id=payment.id, reason="expired")
        handled += outcome != "unavailable"
    return handled


async def requery_payment(cashier: Cashier, *, payment_id: str) -> dict[str, Any]:
    """Ask the channel again about every attempt of a payment and apply what it says now.

    For reconciliation (settlement, internal): a bill that shows a payment paid which Juhe saw fail or
    close. The answer goes through the same compare-and-set path as notifications and polls, so a real
    success becomes `succeeded` with `late_success` and publishes `payment.succeeded` once.
    """
    async with cashier.uow.read() as conn:
        payment = await get_payment_unscoped(conn, payment_id)
        if payment is None:
            raise Problem(PAYMENT_NOT_FOUND, f"payment {payment_id} does not exist")
        tried = await list_attempts(conn, payment_id)
    for attempt in tried:
        try:
            connector = await cashier.connectors.get(payment.merchant_id, attempt.channel, livemode=payment.livemode)
            result = await connector.query(attempt.out_trade_no)
        except (ChannelUnavailable, ChannelError, InvalidSignature) as exc:
            log.info("re-query failed", attempt_id=attempt.id, error=repr(exc))
            continue
        await apply_trade_result(cashier, attempt_id=attempt.id, result=result, source="requery")
    async with cashier.uow.read() as conn:
        current = await get_payment_unscoped(conn, payment_id)
        assert current is not None
        return payment_view(current, await list_attempts(conn, payment_id))


async def poll_due(cashier: Cashier) -> int:
    """Query the channel for processing attempts whose next poll is due; apply final answers."""
    s = cashier.settings
    now = cashier.clock()
    async with cashier.uow.autocommit() as conn:  # the claim: UPDATE … WHERE id IN (… FOR UPDATE SKIP LOCKED)
        due = await claim_attempts_to_poll(
            conn, now=now, lease_until=now + timedelta(seconds=s.poll_lease_seconds), limit=s.poll_batch_max
        )
    for attempt, livemode in due:
        result: TradeQueryResult | None = None
        try:
            connector = await cashier.connectors.get(attempt.merchant_id, attempt.channel, livemode=livemode)
            result = await connector.query(attempt.out_trade_no)
        except (ChannelUnavailable, ChannelError, InvalidSignature, Problem) as exc:
            log.info("status query failed", attempt_id=attempt.id, error=repr(exc))
        if result is not None and await apply_trade_result(
            cashier, attempt_id=attempt.id, result=result, source="poll"
        ):
            continue
        async with cashier.uow.read() as conn:
            payment = await get_payment_unscoped(conn, attempt.payment_id)
        code_payment = payment if payment is not None and payment_codes.is_payment_code(payment) else None
        if code_payment is not None and await payment_codes.after_poll(cashier, code_payment, attempt, result):
            continue
        count = attempt.poll_count + 1
        backoff = poll_delay_seconds(
            count, initial_seconds=s.poll_initial_seconds, max_seconds=s.poll_backoff_max_seconds
        )
        next_at: datetime | None
        if code_payment is not None:  # polled until settled: the deadline's reversal happens in this loop
            next_at = payment_codes.next_poll_at(cashier, backoff_seconds=backoff, expire_at=code_payment.expire_at)
        else:
            next_at = cashier.clock() + timedelta(seconds=backoff) if count < s.poll_count_max else None
        async with cashier.uow.autocommit() as conn:
            await schedule_attempt_poll(conn, attempt.id, poll_count=count, next_poll_at=next_at)
    return len(due)
