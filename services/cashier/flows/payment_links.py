"""Payment links: the merchant's API (create, read, list, deactivate) and the payer's page calls (the link's view;
open a fresh checkout session from it). See domain/payment_links.py for the rules and docs/checkout.md.

A link's public address is `<pages origin>/pay/<slug>` (128 random bits, not the id): a poster at a counter or a
parking gate carries it in its QR. Each payer who opens it gets an ordinary checkout session (merchant order
number `<link id>.<request id>`, the link's description and methods, the payer's amount and reference fields in
its metadata, so they reach the payment, its webhooks and the bills), paid on the hosted checkout page.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.ids import new_id
from services.cashier.domain import payment_links as rules
from services.cashier.domain.checkout import EXPIRY_MIN_SECONDS
from services.cashier.flows.checkout import SessionDraft, create_session, page_methods, pages_origin
from services.cashier.flows.context import Cashier
from services.cashier.flows.merchants import gateway_merchant_name
from services.cashier.store import payment_links as store


@dataclass(frozen=True, slots=True)
class LinkDraft:
    amount_minor: int | None
    amount_min_minor: int | None
    amount_max_minor: int | None
    currency: str
    description: str
    payer_fields: tuple[str, ...]
    allowed_methods: tuple[str, ...] | None
    return_url: str | None
    max_uses: int | None
    expires_at: datetime | None
    metadata: dict[str, str]
    livemode: bool = False  # the mode of its sessions and their payments (docs/test-mode.md)


def link_url(cashier: Cashier, slug: str) -> str:
    return f"{pages_origin(cashier)}/pay/{slug}"


def link_view(cashier: Cashier, row: Any, *, uses: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """What the merchant sees."""
    return {
        "id": row.id,
        "object": "payment_link",
        "merchant_id": row.merchant_id,
        "status": row.status,
        "url": link_url(cashier, row.slug),
        "poster_url": f"{link_url(cashier, row.slug)}/poster.svg",
        "amount_minor": row.amount_minor,
        "amount_min_minor": row.amount_min_minor,
        "amount_max_minor": row.amount_max_minor,
        "currency": row.currency,
        "description": row.description,
        "payer_fields": row.payer_fields,
        "allowed_methods": row.allowed_methods,
        "return_url": row.return_url,
        "max_uses": row.max_uses,
        "uses_completed": uses[0],
        "uses_open": uses[1],
        "expires_at": row.expires_at,
        "metadata": row.metadata,
        "created_at": row.created_at,
        "deactivated_at": row.deactivated_at,
        "livemode": row.livemode,
    }


async def create_link(cashier: Cashier, *, merchant_id: str, draft: LinkDraft) -> dict[str, Any]:
    amounts = rules.amount_rule(draft.amount_minor, draft.amount_min_minor, draft.amount_max_minor)
    if draft.expires_at is not None and draft.expires_at <= cashier.clock():
        raise Problem(VALIDATION_FAILED, "expires_at is in the past")
    async with cashier.uow.begin() as tx:
        row = await store.insert_link(
            tx.conn,
            {
                "id": new_id("pl"),
                "merchant_id": merchant_id,
                "slug": rules.LINK_SLUG_PREFIX + secrets.token_urlsafe(16),
                "status": rules.LinkStatus.ACTIVE.value,
                "amount_minor": amounts.fixed_minor,
                "amount_min_minor": amounts.min_minor,
                "amount_max_minor": amounts.max_minor,
                "currency": draft.currency,
                "description": draft.description,
                "payer_fields": list(draft.payer_fields),
                "allowed_methods": list(draft.allowed_methods) if draft.allowed_methods is not None else None,
                "return_url": draft.return_url,
                "max_uses": draft.max_uses,
                "expires_at": draft.expires_at,
                "metadata": draft.metadata,
                "livemode": draft.livemode,
            },
        )
    return link_view(cashier, row)


async def read_link(
    cashier: Cashier, *, merchant_id: str, link_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    """The merchant's link; 404 for a link of the other mode than `livemode` (docs/test-mode.md)."""
    async with cashier.uow.read() as conn:
        row = await store.get_link(conn, merchant_id=merchant_id, link_id=link_id)
        if row is None or livemode not in (None, row.livemode):
            raise Problem(rules.PAYMENT_LINK_NOT_FOUND, f"payment link {link_id} does not exist")
        uses = await store.count_uses(conn, link_id=row.id, now=cashier.clock())
    return link_view(cashier, row, uses=uses)


async def list_links(
    cashier: Cashier, *, merchant_id: str, after: str | None, limit: int, livemode: bool | None = None
) -> tuple[list[dict[str, Any]], bool]:
    async with cashier.uow.read() as conn:
        rows = await store.list_links(conn, merchant_id=merchant_id, after=after, limit=limit + 1, livemode=livemode)
        uses = await store.count_uses_of(conn, [row.id for row in rows[:limit]], now=cashier.clock())
    return [link_view(cashier, row, uses=uses.get(row.id, (0, 0))) for row in rows[:limit]], len(rows) > limit


async def deactivate_link(
    cashier: Cashier, *, merchant_id: str, link_id: str, livemode: bool | None = None
) -> dict[str, Any]:
    """No new sessions from it; sessions already open stay payable until their own deadline."""
    await read_link(cashier, merchant_id=merchant_id, link_id=link_id, livemode=livemode)  # 404 if not the caller's
    async with cashier.uow.begin() as tx:
        await store.deactivate_link(tx.conn, merchant_id=merchant_id, link_id=link_id, now=cashier.clock())
    return await read_link(cashier, merchant_id=merchant_id, link_id=link_id)


# ---- the payer's page (public by slug) ------------------------------------------------------------------
def _state(cashier: Cashier, row: Any, uses: tuple[int, int]) -> str:
    """`active`, `inactive` (deactivated or expired) or `used_up` (every use completed or held by an open one)."""
    if row.status != rules.LinkStatus.ACTIVE or (row.expires_at is not None and cashier.clock() >= row.expires_at):
        return "inactive"
    if row.max_uses is not None and sum(uses) >= row.max_uses:
        return "used_up"
    return "active"


async def link_page(cashier: Cashier, slug: str) -> dict[str, Any]:
    """What the payer sees before paying: no ids, no merchant secrets."""
    async with cashier.uow.read() as conn:
        row = await store.get_link_by_slug(conn, slug)
        if row is None:
            raise Problem(rules.PAYMENT_LINK_NOT_FOUND, "no payment link here")
        uses = await store.count_uses(conn, link_id=row.id, now=cashier.clock())
    return {
        "state": _state(cashier, row, uses),
        "merchant_name": await gateway_merchant_name(cashier, row.merchant_id) or row.merchant_id,
        "amount_minor": row.amount_minor,
        "amount_min_minor": row.amount_min_minor,
        "amount_max_minor": row.amount_max_minor,
        "currency": row.currency,
        "description": row.description,
        "payer_fields": row.payer_fields,
        "url": link_url(cashier, row.slug),
        # What its poster may promise: the methods the link's sessions can offer (each page load may offer fewer)
        "methods": await page_methods(
            cashier, row.merchant_id, allowed_methods=row.allowed_methods, currency=row.currency, livemode=row.livemode
        ),
    }


async def open_session(
    cashier: Cashier, slug: str, *, amount_minor: int | None, payer_values: dict[str, str], request_id: str
) -> dict[str, Any]:
    """A fresh checkout session for this payer: `{url, token}` of its hosted page. The same request id opens the
    same session (a double-submitted form)."""
    async with cashier.uow.read() as conn:
        link = await store.get_link_by_slug(conn, slug)
    if link is None:
        raise Problem(rules.PAYMENT_LINK_NOT_FOUND, "no payment link here")
    amount = rules.AmountRule(link.amount_minor, link.amount_min_minor, link.amount_max_minor).resolve(amount_minor)
    values = rules.clean_payer_values(link.payer_fields, payer_values)
    order_no = rules.session_order_no(link.id, request_id)
    seconds = rules.SESSION_EXPIRY_SECONDS
    if link.expires_at is not None:  # a session never outlives its link by much: at least the minimum, though
        seconds = max(EXPIRY_MIN_SECONDS, min(seconds, int((link.expires_at - cashier.clock()).total_seconds())))
    draft = SessionDraft(
        merchant_order_no=order_no,
        amount_minor=amount,
        currency=link.currency,
        description=link.description,
        line_items=[],
        allowed_methods=tuple(link.allowed_methods) if link.allowed_methods is not None else None,
        return_url=link.return_url or f"{link_url(cashier, slug)}/paid",
        cancel_url=link_url(cashier, slug),
        expires_in_seconds=seconds,
        locale=None,
        wallet_holder_id=None,
        metadata={**link.metadata, **values, "payment_link_id": link.id},
        livemode=link.livemode,
    )
    guard = functools.partial(_take_use, cashier, slug=slug, order_no=order_no)
    view, _ = await create_session(
        cashier, merchant_id=link.merchant_id, draft=draft, payment_link_id=link.id, guard=guard
    )
    return {"url": view["url"], "token": view["url"].rsplit("/", 1)[1], "expires_at": view["expires_at"]}


async def _take_use(cashier: Cashier, conn: AsyncConnection, *, slug: str, order_no: str) -> None:
    """In the session's insert transaction: lock the link, refuse when it is inactive or used up."""
    link = await store.get_link_by_slug(conn, slug, for_update=True)
    assert link is not None
    uses = await store.count_uses(conn, link_id=link.id, now=cashier.clock(), except_order_no=order_no)
    state = _state(cashier, link, uses)
    if state == "inactive":
        raise Problem(rules.PAYMENT_LINK_INACTIVE, "this payment link no longer takes payments")
    if state == "used_up":
        raise Problem(rules.PAYMENT_LINK_USED_UP, "this payment link has been used up", max_uses=link.max_uses)
