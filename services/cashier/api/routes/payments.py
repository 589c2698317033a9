"""Payments: create, read, look up by merchant order number, list, close; a wallet payer's confirmation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.internal_auth import DEV_KEY_ID, Identity, internal_identity, merchant_scope
from libs.common.modes import livemode_of
from libs.common.paging import KnownQueryOnly, cursor_query
from libs.common.web import JsonFastRoute, json_answer
from services.cashier.api.deps import Caller, CashierDep, LivemodeQuery, MerchantId, PageSize, livemode_query
from services.cashier.api.schemas import (
    PaymentAggregateRow,
    PaymentAggregates,
    PaymentConfirmRequest,
    PaymentCreateRequest,
    PaymentPage,
    PaymentResponse,
)
from services.cashier.connectors.registry import CHANNELS
from services.cashier.context import cashier_context
from services.cashier.domain.errors import PAYER_MISMATCH, PURPOSE_NOT_ALLOWED
from services.cashier.domain.payments import PaymentStatus, may_create_purpose
from services.cashier.flows.context import Cashier
from services.cashier.flows.payments import PaymentDraft, close_payment, create_payment, read_payment
from services.cashier.flows.views import payment_view
from services.cashier.flows.wallet import confirm_wallet_payment
from services.cashier.flows.webhook_targets import ensure_allowed_notify_url
from services.cashier.store.payments import (
    get_payment_by_order_no,
    list_attempts_of,
    list_payments,
    payment_aggregates,
)

router = APIRouter(prefix="/v1/payments", tags=["payments"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: PaymentCreateRequest, merchant_id: MerchantId, caller: Caller, cashier: CashierDep, response: Response
) -> PaymentResponse:
    payment, created = await create_answer(cashier, caller, merchant_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return payment


class FastCreateRoute(JsonFastRoute[PaymentCreateRequest]):
    """`POST /v1/payments`, the gateway's call on every payment, without FastAPI's per-request machinery for a valid
    body (libs/common/web.py `JsonFastRoute`): the same identity checks as `create`'s dependencies, in the same order
    (401 `identity_missing` / `identity_invalid`, then 403 `merchant_scope_required`), the same answer and status
    (201, 200 for a replay). Anything it declines (a body that does not validate, another content type) is `create`'s,
    so every refusal is FastAPI's own (docs/performance.md, "Seventh pass: the cashier")."""

    def __init__(self) -> None:
        super().__init__(router.prefix, PaymentCreateRequest)

    async def respond(self, request: Request, body: PaymentCreateRequest) -> Response:
        caller = internal_identity(request)
        merchant_id = await merchant_scope(caller)
        payment, created = await create_answer(
            cashier_context(request.app.state.runtime).cashier, caller, merchant_id, body
        )
        return json_answer(payment, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


async def create_answer(
    cashier: Cashier, caller: Identity, merchant_id: str, body: PaymentCreateRequest
) -> tuple[PaymentResponse, bool]:
    """The create's answer and whether it created the payment (False: a replay of the same order)."""
    if not may_create_purpose(body.purpose, service=caller.service, platform=caller.platform):
        raise Problem(PURPOSE_NOT_ALLOWED, f"a {caller.kind} identity cannot create a {body.purpose.value} payment")
    ensure_allowed_notify_url(cashier.settings, body.notify_url)
    draft = PaymentDraft(
        merchant_order_no=body.merchant_order_no,
        amount_minor=body.amount_minor,
        currency=body.currency,
        description=body.description,
        scene=body.scene,
        payer=payer_of(body),
        expire_at=body.expire_at,
        notify_url=body.notify_url,
        return_url=body.return_url,
        metadata=body.metadata,
        preferred_channels=tuple(body.preferred_channels),
        excluded_channels=tuple(body.excluded_channels),
        purpose=body.purpose,
        wallet_holder_id=body.wallet_holder_id,
        profit_sharing=body.profit_sharing,
        split=tuple((line.receiver_id, line.amount_minor) for line in body.split) if body.split is not None else None,
        coupon_id=body.coupon_id,
        coupon_code=body.coupon_code,
        livemode=livemode_of(cashier.mode_of(caller)),
    )
    result = await create_payment(cashier, merchant_id=merchant_id, draft=draft)
    return PaymentResponse.model_validate(result.payment), result.created


def payer_of(body: PaymentCreateRequest) -> dict[str, Any]:
    """The stored payer: the hints, plus the scanned auth_code of a payment_code payment (a re-drive after a
    crash must charge the same code; the code is single-use and valid about a minute)."""
    payer = body.payer.model_dump(exclude_none=True)
    if body.auth_code is not None:
        payer["auth_code"] = body.auth_code
    return payer


@router.get("", dependencies=[KnownQueryOnly])
async def list_(
    merchant_id: MerchantId,
    caller: Caller,
    cashier: CashierDep,
    limit: PageSize,
    merchant_order_no: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    status_: Annotated[PaymentStatus | None, Query(alias="status")] = None,
    channel: Annotated[str | None, Query(description=f"One of {sorted(CHANNELS)}")] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    amount_minor: Annotated[int | None, Query(ge=1, description="Exactly this amount (minor units)")] = None,
    amount_minor_gte: Annotated[int | None, Query(ge=1, description="At least this amount (minor units)")] = None,
    amount_minor_lte: Annotated[int | None, Query(ge=1, description="At most this amount (minor units)")] = None,
    cursor: Annotated[str | None, cursor_query(r"^pay_[0-9a-z]+$")] = None,
    livemode: LivemodeQuery = None,
) -> PaymentPage:
    """Newest first, each payment with its attempts. `merchant_order_no` looks one payment up: a list of one, or
    an empty list when there is none (a list never 404s). Amounts filter in minor units: an exact amount does not
    combine with a range, and a range whose lower end is above its upper end is refused rather than answered with
    an empty page that would look like "no such payments". A test key lists only test payments, a live key only
    live ones (docs/test-mode.md)."""
    livemode = livemode_query(cashier, caller, livemode)
    if channel is not None and channel not in CHANNELS:
        raise Problem(VALIDATION_FAILED, f"unknown channel {channel!r}; known: {sorted(CHANNELS)}", field="channel")
    if amount_minor is not None and (amount_minor_gte is not None or amount_minor_lte is not None):
        raise Problem(
            VALIDATION_FAILED, "amount_minor does not combine with amount_minor_gte/lte", field="amount_minor"
        )
    if amount_minor_gte is not None and amount_minor_lte is not None and amount_minor_gte > amount_minor_lte:
        raise Problem(VALIDATION_FAILED, "amount_minor_gte is above amount_minor_lte", field="amount_minor_gte")
    async with cashier.uow.read() as conn:
        if merchant_order_no is not None:
            one = await get_payment_by_order_no(conn, merchant_id=merchant_id, merchant_order_no=merchant_order_no)
            rows: Sequence[Any] = [one] if one is not None and livemode in (None, one.livemode) else []
            limit = max(limit, 1)
        else:
            rows = await list_payments(
                conn,
                merchant_id=merchant_id,
                limit=limit + 1,
                after_id=cursor,
                status=status_,
                channel=channel,
                created_from=created_from,
                created_to=created_to,
                amount_from=amount_minor if amount_minor is not None else amount_minor_gte,
                amount_to=amount_minor if amount_minor is not None else amount_minor_lte,
                livemode=livemode,
            )
        attempts = await list_attempts_of(conn, [r.id for r in rows[:limit]])
    return PaymentPage.of(
        rows,
        limit,
        item=lambda r: PaymentResponse.model_validate(payment_view(r, attempts[r.id])),
        cursor_of=lambda p: p.id,
    )


AGGREGATE_DAYS_MAX = 92  # a quarter: the span one aggregate query may cover (the scan is bounded by it)
AGGREGATE_TIMEZONE = "Asia/Shanghai"  # the days of a CNY merchant's dashboard, bills and statements


@router.get("/aggregates", dependencies=[KnownQueryOnly])
async def aggregates(
    merchant_id: MerchantId,
    caller: Caller,
    cashier: CashierDep,
    created_from: datetime,
    created_to: datetime | None = None,
    livemode: LivemodeQuery = None,
) -> PaymentAggregates:
    """Counts and sums of the merchant's payments created in [`created_from`, `created_to`) (default: now) by China
    day, channel, status and currency, computed in SQL: a dashboard's exact figures for 100,000 payments without
    reading them. At most 92 days at once; times need an offset (a naive time would be read in the server's zone).
    A key counts only its own mode's payments; a console session should pass `livemode` (test money is not money)."""
    until = created_to or cashier.clock()
    if created_from.tzinfo is None or until.tzinfo is None:
        raise Problem(VALIDATION_FAILED, "created_from and created_to need a UTC offset", field="created_from")
    if not created_from < until <= created_from + timedelta(days=AGGREGATE_DAYS_MAX):
        raise Problem(
            VALIDATION_FAILED, f"the period must be 1 second to {AGGREGATE_DAYS_MAX} days", field="created_to"
        )
    async with cashier.uow.read() as conn:
        rows = await payment_aggregates(
            conn,
            merchant_id=merchant_id,
            created_from=created_from,
            created_to=until,
            timezone=AGGREGATE_TIMEZONE,
            livemode=livemode_query(cashier, caller, livemode),
        )
    return PaymentAggregates(
        timezone=AGGREGATE_TIMEZONE,
        created_from=created_from,
        created_to=until,
        data=[PaymentAggregateRow.model_validate(r, from_attributes=True) for r in rows],
    )


@router.get("/{payment_id}")
async def read(payment_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> PaymentResponse:
    """404 for a payment of the other mode than the caller's key (docs/test-mode.md)."""
    view = await read_payment(
        cashier, merchant_id=merchant_id, payment_id=payment_id, livemode=cashier.livemode_filter(caller)
    )
    return PaymentResponse.model_validate(view)


@router.post("/{payment_id}/close")
async def close(payment_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> PaymentResponse:
    view = await close_payment(
        cashier, merchant_id=merchant_id, payment_id=payment_id, livemode=cashier.livemode_filter(caller)
    )
    return PaymentResponse.model_validate(view)


@router.post("/{payment_id}/confirm")
async def confirm(
    payment_id: str, caller: Caller, cashier: CashierDep, body: PaymentConfirmRequest | None = None
) -> PaymentResponse:
    """The payer confirms a wallet payment. The payer is the gateway-authenticated user; in dev/test (no
    identity token) the body's `user_id` stands for it. A user token carrying a merchant is scoped to it."""
    payer = caller.user or (body.user_id if body and caller.key_id == DEV_KEY_ID else None)
    if not payer:
        raise Problem(PAYER_MISMATCH, "only the paying user can confirm a wallet payment")
    if caller.user and body and body.user_id and body.user_id != caller.user:
        raise Problem(PAYER_MISMATCH, "user_id does not match the authenticated user")
    scope = caller.merchant_id if caller.user else None
    view = await confirm_wallet_payment(cashier, payment_id=payment_id, payer_user_id=payer, merchant_id=scope)
    return PaymentResponse.model_validate(view)
