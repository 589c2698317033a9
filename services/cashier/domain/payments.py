"""Payments and attempts: the lifecycle of docs/architecture.md §5 as pure rules.

A payment moves `created → processing → succeeded | failed | closed`. Each channel tried is an
**attempt** with its own out_trade_no. Channel outcomes arrive twice on purpose (signed notification
and our own status query); `decide_outcome` says what one outcome changes given the current states,
and the store applies that decision with compare-and-set on the old status, so the second arrival
of the same outcome finds nothing to change and publishes nothing.

A success never gets lost: the channel holds the payer's money, so a success reported for a payment
we already closed (expiry raced the payer) or failed (a prepay that timed out but went through) is
still applied, flagged `late_success` for the merchant to see.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from libs.common.errors import Problem
from services.cashier.domain.errors import EXPIRY_OUT_OF_RANGE


class PaymentScene(enum.StrEnum):
    """How the payer pays; the connectors' scenes plus the platform wallet."""

    NATIVE_QR = "native_qr"
    JSAPI = "jsapi"
    MINI_PROGRAM = "mini_program"
    APP = "app"
    H5 = "h5"
    PAGE = "page"
    WALLET = "wallet"
    # 付款码: the merchant scans the code the payer shows; the code's prefix decides the channel.
    PAYMENT_CODE = "payment_code"


class PaymentPurpose(enum.StrEnum):
    """What the money is for. A top-up credits a user's wallet (the ledger runs §3.7 instead of §3.1)."""

    PAYMENT = "payment"
    WALLET_TOPUP = "wallet_topup"


# Who may create a top-up: the ledger (it checked the holder's entitlements) or a platform operator. A
# merchant could otherwise mint wallet balance for any user by paying itself.
TOPUP_SERVICES = frozenset({"ledger"})
SPLIT_ENTRIES_MAX = 20


def may_create_purpose(purpose: PaymentPurpose, *, service: str | None, platform: str | None) -> bool:
    if purpose is PaymentPurpose.PAYMENT:
        return True
    return bool(platform) or service in TOPUP_SERVICES


def purpose_problem(
    purpose: PaymentPurpose, *, wallet_holder_id: str | None, scene: PaymentScene, has_split: bool
) -> str | None:
    """Why this purpose does not fit the rest of the request (None when it does)."""
    if purpose is PaymentPurpose.WALLET_TOPUP:
        if not wallet_holder_id:
            return "a wallet_topup payment needs wallet_holder_id (whose wallet is credited)"
        if scene is PaymentScene.WALLET:
            return "a wallet cannot be topped up from the wallet itself (scene wallet)"
        if has_split:
            return "a wallet_topup payment cannot be split: it all goes to the user's wallet"
    elif wallet_holder_id is not None:
        return "wallet_holder_id is only for purpose wallet_topup"
    return None


def payment_code_problem(scene: PaymentScene, *, auth_code: str | None, profit_sharing: bool) -> str | None:
    """Why a request's auth_code does not fit its scene (None when it does)."""
    if scene is PaymentScene.PAYMENT_CODE:
        if not auth_code:
            return "scene payment_code needs auth_code (the code the payer shows, as scanned)"
        if profit_sharing:
            return "a payment_code payment cannot freeze funds for profit sharing (profit_sharing: false)"
    elif auth_code is not None:
        return "auth_code is only for scene payment_code"
    return None


def split_problem(amount_minor: int, split: list[tuple[str, int]]) -> str | None:
    """Why an explicit split is not acceptable on its own (the merchant's split rule is settlement's)."""
    if not 1 <= len(split) <= SPLIT_ENTRIES_MAX:
        return f"split needs 1..{SPLIT_ENTRIES_MAX} entries"
    receivers = [receiver for receiver, _ in split]
    if len(set(receivers)) != len(receivers):
        return "split receivers must be unique"
    if any(amount <= 0 for _, amount in split):
        return "every split amount_minor must be > 0"
    if sum(amount for _, amount in split) > amount_minor:
        return "the split adds up to more than the payment's amount_minor"
    return None


class PaymentStatus(enum.StrEnum):
    CREATED = "created"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class AttemptStatus(enum.StrEnum):
    CREATED = "created"  # the prepay call is in flight
    PROCESSING = "processing"  # the channel took the order; waiting for the payer
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    """A final answer from the channel about one attempt."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.CREATED: frozenset({PaymentStatus.PROCESSING, PaymentStatus.FAILED, PaymentStatus.CLOSED}),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CLOSED}),
    # Late success only: the channel took the money after we gave up on the payment.
    PaymentStatus.CLOSED: frozenset({PaymentStatus.SUCCEEDED}),
    PaymentStatus.FAILED: frozenset({PaymentStatus.SUCCEEDED}),
    PaymentStatus.SUCCEEDED: frozenset(),
}

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    # CLOSED from CREATED: the process stopped mid-prepay and expiry cleans the attempt up.
    AttemptStatus.CREATED: frozenset({AttemptStatus.PROCESSING, AttemptStatus.FAILED, AttemptStatus.CLOSED}),
    AttemptStatus.PROCESSING: frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CLOSED}),
    AttemptStatus.CLOSED: frozenset({AttemptStatus.SUCCEEDED}),
    AttemptStatus.FAILED: frozenset({AttemptStatus.SUCCEEDED}),
    AttemptStatus.SUCCEEDED: frozenset(),
}

FINAL_PAYMENT_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CLOSED})
OPEN_PAYMENT_STATUSES = frozenset({PaymentStatus.CREATED, PaymentStatus.PROCESSING})


def can_move_payment(old: PaymentStatus, new: PaymentStatus) -> bool:
    return new in PAYMENT_TRANSITIONS[old]


def can_move_attempt(old: AttemptStatus, new: AttemptStatus) -> bool:
    return new in ATTEMPT_TRANSITIONS[old]


@dataclass(frozen=True, slots=True)
class OutcomeDecision:
    """What one channel outcome changes. None means "leave as is"."""

    attempt_to: AttemptStatus | None = None
    payment_to: PaymentStatus | None = None
    late_success: bool = False
    # The payer paid on an attempt other than the one the payment succeeded with: both channels hold
    # money. Recorded on the attempt for the operator (refund it); the payment itself does not change.
    duplicate_success: bool = False

    @property
    def changes_anything(self) -> bool:
        return self.attempt_to is not None or self.payment_to is not None


def decide_outcome(
    *,
    payment_status: PaymentStatus,
    attempt_status: AttemptStatus,
    is_current_attempt: bool,
    outcome: Outcome,
) -> OutcomeDecision:
    """The transitions one channel outcome causes; an outcome already applied decides nothing."""
    if outcome is Outcome.SUCCEEDED:
        attempt_to = AttemptStatus.SUCCEEDED if can_move_attempt(attempt_status, AttemptStatus.SUCCEEDED) else None
        if payment_status is PaymentStatus.SUCCEEDED:
            duplicate = attempt_to is not None and not is_current_attempt
            return OutcomeDecision(attempt_to=attempt_to, duplicate_success=duplicate)
        if attempt_to is None and attempt_status is not AttemptStatus.SUCCEEDED:
            return OutcomeDecision()
        return OutcomeDecision(
            attempt_to=attempt_to,
            payment_to=PaymentStatus.SUCCEEDED,
            late_success=payment_status in (PaymentStatus.CLOSED, PaymentStatus.FAILED),
        )
    target_attempt = AttemptStatus.FAILED if outcome is Outcome.FAILED else AttemptStatus.CLOSED
    target_payment = PaymentStatus.FAILED if outcome is Outcome.FAILED else PaymentStatus.CLOSED
    if attempt_status is not AttemptStatus.PROCESSING:
        return OutcomeDecision()  # only a live attempt can fail or close; anything else is stale news
    payment_to = target_payment if is_current_attempt and payment_status is PaymentStatus.PROCESSING else None
    return OutcomeDecision(attempt_to=target_attempt, payment_to=payment_to)


# Channel answers to a prepay of an out_trade_no they already hold with other parameters, paid or closed
# (WeChat Pay v3, Alipay, UnionPay, the e-CNY bank; the ledger for the wallet, whose hold body carries a
# timeout computed at call time): the order exists, so a re-drive asks the channel about it instead of giving up.
ORDER_EXISTS_CODES = frozenset(
    {
        "ORDERPAID",
        "ORDER_CLOSED",
        "OUT_TRADE_NO_USED",
        "ACQ.TRADE_HAS_SUCCESS",
        "ACQ.TRADE_HAS_CLOSE",
        "ACQ.CONTEXT_INCONSISTENT",
        "idempotency_key_reused",
        "UNIONPAY_12",  # UnionPay 重复交易: this orderId (merId + orderId + txnTime) was used already
        "ORDER_NO_USED",  # the e-CNY bank: this out_trade_no was used with another request
    }
)


def request_fingerprint(fields: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a create request: "same body" means same fingerprint.

    Never raises on any str: a lone UTF-16 surrogate (valid in a Python str, not in UTF-8) is encoded with
    `surrogatepass`, which leaves every valid string's bytes (and so every stored fingerprint) unchanged and
    keeps distinct strings distinct. The boundary refuses such bodies anyway; this is the last line.
    """
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()


def resolve_expire_at(*, now: datetime, requested: datetime | None, default_seconds: int, max_seconds: int) -> datetime:
    """The payment's deadline: the merchant's, if it is in the future and within the limit."""
    if requested is None:
        return now + timedelta(seconds=default_seconds)
    if requested.tzinfo is None:
        raise Problem(EXPIRY_OUT_OF_RANGE, "expire_at must carry a timezone offset")
    if requested <= now:
        raise Problem(EXPIRY_OUT_OF_RANGE, "expire_at is in the past")
    if requested > now + timedelta(seconds=max_seconds):
        raise Problem(EXPIRY_OUT_OF_RANGE, f"expire_at is more than {max_seconds} s ahead")
    return requested


def poll_delay_seconds(poll_count: int, *, initial_seconds: float, max_seconds: float) -> float:
    """Exponential backoff for status queries of a processing attempt: initial × 2^n, capped."""
    return float(min(max_seconds, initial_seconds * (2 ** min(poll_count, 30))))


def platform_fee_of(amount_minor: int, rate_bps: int) -> int:
    """The platform fee charged to the merchant: round_half_up(amount × bps / 10000), integer fen."""
    return (amount_minor * rate_bps + 5000) // 10000


def wallet_out_trade_no(payment_id: str) -> str:
    """A wallet attempt's out_trade_no is the payment id itself, so the ledger hold's key is exactly
    docs/ledger.md §3.2 `pay_…:hold` (the ledger has no length limit; one wallet attempt per payment)."""
    return payment_id


def out_trade_no_of(attempt_id: str) -> str:
    """The merchant order number sent to the channel for one attempt.

    WeChat allows 6–32 characters and Alipay 64, so the attempt id's 32 hex digits (a UUIDv7: unique
    and time-sortable) fit both; the `att_` prefix would not.
    """
    return attempt_id.partition("_")[2]
