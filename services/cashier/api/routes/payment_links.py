"""Payment links (收款链接 / 码牌): the merchant's API and the payer page's calls (docs/checkout.md).

Merchant (signed through the gateway, `Idempotency-Key` on writes there): `POST /v1/payment-links`,
`GET /v1/payment-links`, `GET /v1/payment-links/{id}`, `POST /v1/payment-links/{id}/deactivate`.
Page (under the gateway's passthrough prefix `/v1/checkout/pages`, no authentication, rate-limited per payer
browser: the link is public by design, printed on a poster): `GET /v1/checkout/pages/links/{slug}`,
`POST /v1/checkout/pages/links/{slug}/sessions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from libs.common.metadata import METADATA_KEYS_MAX, Metadata, keys_at_most, metadata_description
from libs.common.modes import livemode_of
from libs.common.money import AmountMinor, Currency
from libs.common.paging import KnownQueryOnly, ListPage, cursor_query
from services.cashier.api.deps import Caller, CashierDep, MerchantId, PageSize
from services.cashier.api.schemas import ChannelName, Url
from services.cashier.domain import payment_links as rules
from services.cashier.flows import payment_links as flows

router = APIRouter(tags=["payment links"])

Slug = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^pl_[A-Za-z0-9_-]+$")]
LinkRequestId = Annotated[str, StringConstraints(min_length=8, max_length=28, pattern=r"^[A-Za-z0-9_-]+$")]
PayerFieldName = Annotated[str, StringConstraints(pattern=r"^(plate_number|student_id|unit_number|reference)$")]
# A payer's payment adds the payer fields, payment_link_id and the checkout session's 2 keys to the link's metadata.
LINK_METADATA_KEYS_MAX = METADATA_KEYS_MAX - 2 - rules.PAYER_FIELDS_MAX - 1


class PaymentLinkCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: AmountMinor | None = Field(default=None, description="Fixed amount; omit to let the payer enter it")
    amount_min_minor: AmountMinor | None = Field(default=None, description="Payer-entered: lower bound (default 1)")
    amount_max_minor: AmountMinor | None = Field(default=None, description="Payer-entered: upper bound")
    currency: Currency
    description: str = Field(min_length=1, max_length=256)
    payer_fields: list[PayerFieldName] = Field(default_factory=list, max_length=rules.PAYER_FIELDS_MAX)
    allowed_methods: list[ChannelName] | None = Field(default=None, min_length=1, max_length=10)
    return_url: Url | None = Field(default=None, description="Default: Juhe's own thank-you page")
    max_uses: int | None = Field(default=None, ge=1, le=rules.USES_MAX, description="1 = single-use; omit: no limit")
    expires_at: AwareDatetime | None = Field(default=None, description="With a time zone; none: no expiry")
    metadata: Annotated[Metadata, keys_at_most(LINK_METADATA_KEYS_MAX)] = Field(
        default_factory=dict, description=metadata_description(LINK_METADATA_KEYS_MAX)
    )


class PaymentLinkResponse(BaseModel):
    id: str
    object: str
    merchant_id: str
    status: str = Field(description="active | deactivated")
    url: str = Field(description="The payer's page: print it as a QR (poster_url) or send it")
    poster_url: str = Field(description="A printable SVG poster with the link's QR: ?size=a6|a4&lang=zh_CN|en")
    amount_minor: int | None
    amount_min_minor: int
    amount_max_minor: int
    currency: str
    description: str
    payer_fields: list[str]
    allowed_methods: list[str] | None
    return_url: str | None
    max_uses: int | None
    uses_completed: int
    uses_open: int
    expires_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime
    deactivated_at: datetime | None
    livemode: bool = Field(description="Its sessions' payments are live (made with a live key); false: test")


class PaymentLinkList(ListPage[PaymentLinkResponse]):
    """Newest first; the cursor is the last link's id."""


class LinkSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: LinkRequestId
    amount_minor: AmountMinor | None = None
    payer_fields: dict[PayerFieldName, Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=dict, max_length=rules.PAYER_FIELDS_MAX
    )


@router.post("/v1/payment-links", status_code=status.HTTP_201_CREATED)
async def create(
    body: PaymentLinkCreateRequest, merchant_id: MerchantId, caller: Caller, cashier: CashierDep
) -> PaymentLinkResponse:
    draft = flows.LinkDraft(
        amount_minor=body.amount_minor,
        amount_min_minor=body.amount_min_minor,
        amount_max_minor=body.amount_max_minor,
        currency=body.currency,
        description=body.description,
        payer_fields=tuple(dict.fromkeys(body.payer_fields)),
        allowed_methods=tuple(body.allowed_methods) if body.allowed_methods is not None else None,
        return_url=body.return_url,
        max_uses=body.max_uses,
        expires_at=body.expires_at,
        metadata=dict(body.metadata),
        livemode=livemode_of(cashier.mode_of(caller)),
    )
    return PaymentLinkResponse.model_validate(await flows.create_link(cashier, merchant_id=merchant_id, draft=draft))


@router.get("/v1/payment-links", dependencies=[KnownQueryOnly])
async def list_links(
    merchant_id: MerchantId,
    caller: Caller,
    cashier: CashierDep,
    limit: PageSize,
    cursor: Annotated[str | None, cursor_query(r"^pl_[0-9a-f]{32}$")] = None,
) -> PaymentLinkList:
    """Newest first; `next_cursor` (the last id) asks for the next page."""
    links, more = await flows.list_links(
        cashier, merchant_id=merchant_id, after=cursor, limit=limit, livemode=cashier.livemode_filter(caller)
    )
    return PaymentLinkList(
        data=[PaymentLinkResponse.model_validate(link) for link in links],
        has_more=more,
        next_cursor=links[-1]["id"] if more else None,
    )


@router.get("/v1/payment-links/{link_id}")
async def read(link_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> PaymentLinkResponse:
    """404 for a link of the other mode than the caller's key (docs/test-mode.md)."""
    livemode = cashier.livemode_filter(caller)
    return PaymentLinkResponse.model_validate(
        await flows.read_link(cashier, merchant_id=merchant_id, link_id=link_id, livemode=livemode)
    )


@router.post("/v1/payment-links/{link_id}/deactivate")
async def deactivate(link_id: str, merchant_id: MerchantId, caller: Caller, cashier: CashierDep) -> PaymentLinkResponse:
    livemode = cashier.livemode_filter(caller)
    return PaymentLinkResponse.model_validate(
        await flows.deactivate_link(cashier, merchant_id=merchant_id, link_id=link_id, livemode=livemode)
    )


@router.get("/v1/checkout/pages/links/{slug}")
async def link_page(slug: Slug, cashier: CashierDep) -> dict[str, Any]:
    """The payer's view of the link: state, merchant name, amount or bounds, description, fields to fill."""
    return await flows.link_page(cashier, slug)


@router.post("/v1/checkout/pages/links/{slug}/sessions", status_code=status.HTTP_201_CREATED)
async def open_session(slug: Slug, body: LinkSessionRequest, cashier: CashierDep) -> dict[str, Any]:
    """A fresh checkout session for this payer: `{url, token, expires_at}` of its hosted page."""
    return await flows.open_session(
        cashier, slug, amount_minor=body.amount_minor, payer_values=dict(body.payer_fields), request_id=body.request_id
    )
