"""Payment links (`/pay/{slug}`) and their 码牌 posters: a payer scans a poster at a counter or opens a link, fills in
the amount (when the merchant lets them) and the reference fields the merchant asks (plate number, student id,
unit number), and is sent to a fresh hosted checkout session (`/checkout/{token}`) to pay.

Every call goes to the gateway's `/v1/checkout/pages/links/{slug}` (public: the link is printed on a poster), with
the web process's first-party token naming the payer's browser for the per-browser rate limit, as the checkout
page does. The poster is a vector SVG sized in millimetres (A6 or A4): it prints sharp at any size, and
"print to PDF" in a browser gives the PDF.
"""

from __future__ import annotations

import html
import re
import secrets
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from libs.common.logging import get_logger
from web import i18n
from web.clients.gateway import GatewayProblem, GatewayUnavailable
from web.i18n import parse_amount_minor
from web.pages import PageContext, page_context

log = get_logger("juhe.web.payment_links")
router = APIRouter(prefix="/pay", include_in_schema=False)
Page = Annotated[PageContext, Depends(page_context)]
Slug = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^pl_[A-Za-z0-9_-]+$")]

ERRORS = ("amount_invalid", "field_invalid", "used_up", "inactive", "failed")
FIELDS = ("plate_number", "student_id", "unit_number", "reference")
# Poster sizes in millimetres (ISO 216): A6 for a counter stand, A4 for a wall or a parking gate.
POSTER_SIZES_MM: dict[str, tuple[int, int]] = {"a6": (105, 148), "a4": (210, 297)}
POSTER_TEXT_MAX_CHARS = 28  # one line of the poster (SVG text does not wrap)
# The poster names the methods the link's sessions can offer (the cashier's `methods`), as the checkout page does
# (templates/_checkout_names.html): a printed poster must not promise a method the payer cannot use.
METHOD_NAMES = {
    "wechatpay": "WeChat Pay",
    "alipay": "Alipay",
    "unionpay": "UnionPay",
    "ecny": "e-CNY",
    "wallet": "Juhe wallet",
}


async def _link(page: PageContext, slug: str) -> dict[str, Any] | None:
    try:
        return await page.web.gateway.link_page(slug, browser_ip=page.browser_ip())
    except GatewayProblem as exc:
        if exc.status in (404, 422):
            return None
        raise GatewayUnavailable(f"{exc.status} {exc.code}") from exc  # rate-limited: "busy, try again"


def _error(page: PageContext) -> str | None:
    error = page.request.query_params.get("error")
    return error if error in ERRORS else None


@router.get("/{slug}")
async def link(slug: Slug, page: Page) -> Response:
    view = await _link(page, slug)
    if view is None:
        return page.render("pay_missing.html", status_code=404)
    return page.render(
        "pay_link.html",
        view=view,
        slug=slug,
        error=_error(page),
        request_id=secrets.token_hex(10),
        fields=[name for name in view.get("payer_fields", []) if name in FIELDS],
        pre_session_csrf=None if page.session else page.pre_session_csrf(),
    )


@router.post("/{slug}")
async def open_checkout(slug: Slug, page: Page) -> Response:
    """The payer's amount and fields → a new checkout session → its page (303)."""
    form = await page.form()
    amount: int | None = None
    if form.get("amount") is not None:
        amount = parse_amount_minor(form.get("amount", ""))
        if amount is None:
            return page.redirect(f"/pay/{slug}", error="amount_invalid")
    values = {name: form[name][:64] for name in FIELDS if name in form}
    request_id = form.get("request_id", "")
    if not re.fullmatch(r"[0-9a-f]{20}", request_id):
        request_id = secrets.token_hex(10)
    try:
        opened = await page.web.gateway.open_link_session(
            slug, amount_minor=amount, payer_fields=values, request_id=request_id, browser_ip=page.browser_ip()
        )
    except GatewayProblem as exc:
        log.info("payment link refused", code=exc.code, status=exc.status)
        if exc.code == "payment_link_not_found":
            return page.render("pay_missing.html", status_code=404)
        return page.redirect(f"/pay/{slug}", error=_error_code(exc.code))
    return page.redirect(f"/checkout/{opened['token']}")


def _error_code(code: str) -> str:
    return {
        "payment_link_amount_invalid": "amount_invalid",
        "payment_link_field_invalid": "field_invalid",
        "payment_link_used_up": "used_up",
        "payment_link_inactive": "inactive",
    }.get(code, "failed")


@router.get("/{slug}/paid")
async def paid(slug: Slug, page: Page) -> Response:
    """Where a link's session returns when the merchant gave no `return_url` (the signed parameters are ignored:
    the merchant learns of the payment from its webhook)."""
    view = await _link(page, slug)
    if view is None:
        return page.render("pay_missing.html", status_code=404)
    return page.render("pay_paid.html", view=view, slug=slug)


@router.get("/{slug}/poster.svg")
async def poster(
    slug: Slug,
    page: Page,
    size: Annotated[str, Query(pattern=r"^(a6|a4)$")] = "a6",
) -> Response:
    """The 码牌: the link's QR with the merchant's name, what it is for and the amount, in mm for print."""
    view = await _link(page, slug)
    if view is None:
        return page.render("pay_missing.html", status_code=404)
    svg = poster_svg(view, size=size, gettext=page.gettext, money=_money(page))
    return Response(
        svg,
        media_type="image/svg+xml",
        headers={
            "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
            "Content-Disposition": f'inline; filename="juhe-{slug[:12]}-{size}.svg"',
            "Cache-Control": "no-store",
        },
    )


def _money(page: PageContext) -> Any:
    return lambda minor, currency: i18n.money(minor, currency, page.locale)


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return html.escape(text if len(text) <= POSTER_TEXT_MAX_CHARS else text[: POSTER_TEXT_MAX_CHARS - 1] + "…")


def _methods(view: dict[str, Any], gettext: Any) -> str:
    return " · ".join(gettext(METHOD_NAMES[m]) for m in view.get("methods") or [] if m in METHOD_NAMES)


def poster_svg(view: dict[str, Any], *, size: str, gettext: Any, money: Any) -> str:
    """A standalone SVG poster (no script, no external reference), laid out in millimetres on a `size` page."""
    width, height = POSTER_SIZES_MM[size]
    unit = width / 105  # everything scales with the page: A4 is A6 × 2
    qr = segno.make(str(view["url"]), error="q")
    qr_mm = 70 * unit
    qr_x, qr_y = (width - qr_mm) / 2, 42 * unit
    qr_svg = qr.svg_inline(scale=1, border=2, dark="#000", light="#fff", omitsize=True)
    qr_svg = qr_svg.replace("<svg ", f'<svg x="{qr_x:.1f}" y="{qr_y:.1f}" width="{qr_mm:.1f}" height="{qr_mm:.1f}" ', 1)
    if view.get("amount_minor") is not None:
        amount = money(view["amount_minor"], view["currency"])
    else:
        amount = gettext("Enter the amount when you pay")
    texts = [
        (13 * unit, 7 * unit, "bold", "#fff", gettext("Scan to pay")),
        (28 * unit, 6.5 * unit, "bold", "#111", _line(view["merchant_name"])),
        (36 * unit, 4.5 * unit, "normal", "#333", _line(view["description"])),
        (qr_y + qr_mm + 10 * unit, 6 * unit, "bold", "#111", html.escape(amount)),
        (qr_y + qr_mm + 18 * unit, 3.6 * unit, "normal", "#555", html.escape(_methods(view, gettext))),
    ]
    lines = "".join(
        f'<text x="{width / 2:.1f}" y="{y:.1f}" font-size="{font:.1f}" font-weight="{weight}" fill="{fill}" '
        f'text-anchor="middle" font-family="sans-serif">{text}</text>'
        for y, font, weight, fill, text in texts
    )
    title = html.escape(gettext("Payment QR code of %(merchant)s") % {"merchant": view["merchant_name"]})
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}"><title>{title}</title>'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<rect width="{width}" height="{19 * unit:.1f}" fill="#1f6f43"/>'
        f"{lines}{qr_svg}</svg>"
    )
