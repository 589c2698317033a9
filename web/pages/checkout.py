"""The hosted checkout (`/checkout/{token}`): what the payer sees between the merchant's "pay" and its return page.

The page token (256 bits, from the merchant's session `url`) is the only key: every call goes to the gateway's
`/v1/checkout/pages/{token}` (forwarded without identity) except the wallet, which is the signed-in user's.
The device decides the flow: a desktop gets a QR (SVG rendered here with segno) and live status (SSE, 2 s
polling fallback); a phone browser gets the channel's H5 page and comes back to `/checkout/{token}/result`;
inside the WeChat / Alipay app (user agent) the payer authorises the page at the app (OAuth, the cashier's
signed `state`), comes back to `/checkout/{token}/oauth/{channel}` with a code the cashier redeems, and pays with
the app's bridge (`WeixinJSBridge` / `AlipayJSBridge`, called by checkout.js); the wallet asks for the payment PIN,
checked by the gateway before the cashier takes the money. Once paid, the result page sends the payer to the
merchant's `return_url` with parameters the cashier signed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import segno
from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse, Response, StreamingResponse

from libs.common.logging import get_logger
from web.clients.gateway import GatewayProblem, GatewayUnavailable
from web.pages import PageContext, content_security_policy, page_context

log = get_logger("juhe.web.checkout")
router = APIRouter(prefix="/checkout", include_in_schema=False)
Page = Annotated[PageContext, Depends(page_context)]
Token = Annotated[str, Path(min_length=20, max_length=64, pattern=r"^cst_[A-Za-z0-9_-]+$")]

# The in-app browsers' user agents (their JSAPI needs the apps' OAuth, see docs/checkout.md) and phones.
IN_APP = re.compile(r"MicroMessenger|AlipayClient", re.IGNORECASE)
MOBILE = re.compile(r"Mobi|Android|iPhone|iPad|HarmonyOS", re.IGNORECASE)
SSE_STEP_SECONDS = 1.0
SSE_MAX_SECONDS = 300  # a stream ends after this; EventSource reconnects by itself
ERRORS = (
    "method_unavailable",
    "pin_required",
    "payment_pin_incorrect",
    "payment_pin_locked",
    "payment_pin_not_set",
    "insufficient_funds",
    "failed",
    "in_progress",
    "sign_in_required",
    "payer_mismatch",
    "authorise_again",
    "coupon_unavailable",
)
PIN_CODES = {"payment_pin_incorrect", "payment_pin_locked", "payment_pin_not_set"}
ORIGIN = re.compile(r"https://[a-z0-9.-]+(:[0-9]{1,5})?")  # as the cashier stores a merchant's embedding origins


# Inside an app's own browser only that app can pay (WeChat cannot open an Alipay page and the other way round):
# the page offers that wallet alone, paid by JSAPI (OAuth, then the app's bridge), or on its H5 page when the
# merchant's configuration cannot authorise payers (WeChat without the AppSecret).
APP_WALLETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"MicroMessenger", re.IGNORECASE), "wechatpay"),
    (re.compile(r"AlipayClient", re.IGNORECASE), "alipay"),
)


def app_wallet(user_agent: str) -> str | None:
    """The wallet whose in-app browser this is (WeChat's `MicroMessenger/…`, Alipay's `AlipayClient/…`), if any."""
    return next((wallet for pattern, wallet in APP_WALLETS if pattern.search(user_agent)), None)


def offered(methods: list[str], user_agent: str) -> list[str]:
    """The methods this browser can use: inside an app's browser, that app's wallet only."""
    wallet = app_wallet(user_agent)
    return [m for m in methods if m == wallet] if wallet else methods


def scene_for(user_agent: str) -> str:
    """Desktop → QR; phone browser → the channel's H5 page; inside the WeChat / Alipay app → JSAPI."""
    if IN_APP.search(user_agent):
        return "jsapi"
    return "h5" if MOBILE.search(user_agent) else "native_qr"


# The app whose bridge pays a JSAPI payment, by the payment's method (checkout.js calls it).
BRIDGES = {"wechatpay": "wechat", "alipay": "alipay"}
OAUTH_CHANNEL = Annotated[str, Path(pattern=r"^(wechatpay|alipay)$")]


def _bridge(payment: dict[str, Any], action: dict[str, Any]) -> dict[str, Any] | None:
    """The app bridge call of a live JSAPI payment: WeChat's `getBrandWCPayRequest` parameters (signed by the
    cashier with the merchant's key) or Alipay's `tradePay` `{tradeNO}`."""
    params = action.get("jsapi_params") if action.get("type") == "jsapi" else None
    app = BRIDGES.get(str(payment.get("method")))
    if not isinstance(params, dict) or app is None:
        return None
    return {"app": app, "params": {str(k): str(v) for k, v in params.items()}}


def qr_svg(data: str) -> str:
    """The QR as inline SVG (no script, no external reference), sized by CSS."""
    return str(
        segno.make(data, error="m").svg_inline(scale=4, border=4, dark="#000", light="#fff", omitsize=True, title=None)
    )


def _epoch(value: str | datetime) -> float:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.timestamp()


def _qr_data(action: dict[str, Any] | None) -> str | None:
    """The text of a `qr_code` action (the cashier shows every channel's QR as `qr_code`, WeChat's `code_url` too)."""
    if not action or action.get("type") != "qr_code":
        return None
    return str(action.get("qr_code") or "") or None


def _channel_form(action: dict[str, Any]) -> dict[str, Any] | None:
    """A channel paid by a form the browser posts (UnionPay's consume: `{"type": "form", "form": {action,
    method, fields}}`), shown with a button: the payer submits it, no script does."""
    form = action.get("form") if action.get("type") == "form" else None
    if not isinstance(form, dict) or not str(form.get("action", "")).startswith(("https://", "http://")):
        return None
    fields = form.get("fields") or {}
    return {
        "action": str(form["action"]),
        "method": str(form.get("method") or "POST").lower(),
        "fields": {str(k): str(v) for k, v in fields.items()},
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _outcome(page: PageContext) -> str | None:
    error = page.request.query_params.get("error")
    return error if error in ERRORS else None


async def _view(page: PageContext, token: str, *, scene: str | None = None) -> dict[str, Any] | None:
    try:
        return await page.web.gateway.checkout_page(token, scene=scene, browser_ip=page.browser_ip())
    except GatewayProblem as exc:
        if exc.code == "checkout_session_not_found" or exc.status in (404, 422):
            return None
        raise GatewayUnavailable(f"{exc.status} {exc.code}") from exc  # rate-limited: "busy, try again"


def _framing(page: PageContext, view: dict[str, Any]) -> dict[str, Any]:
    """Who may frame this page, and where its results go when it is framed (juhe.js, docs/checkout.md).

    `frame_ancestors` is the merchant's registered origins (else `'none'`): a page of any other origin cannot
    show the checkout in a frame. `embed_origin` is the embedding page's origin that juhe.js put in `?embed=`,
    kept only when it is one of those origins: checkout.js posts its `paid` / `expired` messages to exactly
    that origin, never to `*`."""
    origins = [str(origin) for origin in view.get("frame_origins") or [] if ORIGIN.fullmatch(str(origin))]
    embed = page.request.query_params.get("embed")
    return {
        "frame_ancestors": " ".join(origins) or "'none'",
        "embed_origin": embed if embed in origins else None,
        "embed_query": ("?" + urlencode({"embed": embed})) if embed in origins else "",
    }


def framed_form_token(page: PageContext, token: str) -> str:
    """The CSRF token of the checkout's forms inside juhe.js's iframe: a browser sends a framed page no cookie of
    this site (third-party context), so it is bound to the page's own 256-bit URL token instead (HMAC under the
    web process's session key). It guards only what the page token already allows: starting a QR or H5 payment
    of this session; the wallet form keeps the signed-in session's token."""
    key = page.settings.session_key.get_secret_value().encode()
    return hmac.new(key, b"juhe checkout frame form:" + token.encode(), hashlib.sha256).hexdigest()


def _form_token(page: PageContext, token: str) -> str | None:
    if page.session is not None:
        return None  # the session's own CSRF token
    if page.request.query_params.get("embed"):
        return framed_form_token(page, token)
    return page.pre_session_csrf()


def _redirect(page: PageContext, path: str, **query: str) -> Response:
    """303 to another of this session's pages, keeping `?embed=`. Framed, the redirect answer itself must allow the
    embedding origin (a browser refuses a frame's redirect whose CSP says `frame-ancestors 'none'`); the page it
    leads to checks that origin against the merchant's list again."""
    embed = _embed_query(page)
    response = page.redirect(path, **query, **embed)
    if embed:
        response.headers["Content-Security-Policy"] = content_security_policy(embed["embed"])
    return response


def _embed_query(page: PageContext) -> dict[str, str]:
    """Keeps `?embed=` across the page's own redirects (checked against the merchant's origins on every GET)."""
    embed = page.request.query_params.get("embed")
    return {"embed": embed} if embed and ORIGIN.fullmatch(embed) else {}


async def _coupons(page: PageContext, view: dict[str, Any]) -> list[dict[str, Any]]:
    """A signed-in payer's coupons for this order (the gateway names the user from the session's token), best
    first; none when signed out, when a payment is live, or when marketing cannot answer (the page still pays)."""
    if page.session is None or view.get("status") != "open" or not view.get("merchant_id"):
        return []
    try:
        return await page.web.gateway.applicable_coupons(
            page.session.token,
            merchant_id=str(view["merchant_id"]),
            amount_minor=int(view["amount_minor"]),
            currency=str(view["currency"]),
        )
    except (GatewayProblem, GatewayUnavailable) as exc:
        log.info("checkout coupons not listed", error=str(exc)[:200])
        return []


def _not_found(page: PageContext) -> Response:
    return page.render("checkout_missing.html", status_code=404)


@router.get("/{token}")
async def checkout(token: Token, page: Page) -> Response:
    embed = page.request.query_params.get("embed")
    if page.session is None and page.request.headers.get("sec-fetch-site") == "cross-site" and embed is None:
        # Arriving from the merchant's site: the browser withholds the SameSite=Strict My Wallet cookie on a
        # cross-site navigation. An immediate refresh from this page is same-site, so a signed-in payer is seen.
        query = page.request.url.query
        return page.render("checkout_hop.html", refresh_to=f"/checkout/{token}" + (f"?{query}" if query else ""))
    scene = scene_for(page.request.headers.get("user-agent", ""))
    view = await _view(page, token, scene=scene)
    if view is not None and scene == "jsapi" and not view.get("oauth") and view["status"] == "open":
        scene = "h5"  # the merchant's configuration cannot authorise payers in the app: its H5 page instead
        view = await _view(page, token, scene=scene)
    if view is None:
        return _not_found(page)
    if view["status"] == "completed":
        return _redirect(page, f"/checkout/{token}/result")
    remaining = max(0, int(_epoch(view["expires_at"]) - _epoch(view["server_time"])))
    if view["status"] == "expired" or remaining == 0:
        return page.render("checkout_expired.html", view=view, **_framing(page, view))
    payment = view.get("payment") or {}
    live = payment.get("status") in ("created", "processing")
    qr = _qr_data(payment.get("payer_action")) if live else None
    action = (payment.get("payer_action") or {}) if live else {}
    redirect_url = str(action["url"]) if action.get("type") == "redirect" else None
    channel_form = _channel_form(action)
    bridge = _bridge(payment, action)
    ended = payment.get("status") in ("failed", "closed")
    coupons = [] if live or scene == "jsapi" or page.request.query_params.get("embed") else await _coupons(page, view)
    return page.render(
        "checkout.html",
        view=view,
        token=token,
        scene=scene,
        remaining=remaining,
        **_framing(page, view),
        form_targets=(_origin(channel_form["action"]),) if channel_form else (),
        qr_svg=qr_svg(qr) if qr else None,
        payment=payment if payment else None,
        live=live,
        redirect_url=redirect_url,
        channel_form=channel_form,
        bridge=bridge,
        ended=ended,
        error=_outcome(page),
        oauth=view.get("oauth") or {},
        coupons=coupons,
        methods=offered(view.get("methods", []), page.request.headers.get("user-agent", "")),
        in_app=app_wallet(page.request.headers.get("user-agent", "")),
        request_id=secrets.token_hex(12),
        pre_session_csrf=_form_token(page, token),
        signed_in=page.session is not None,
    )


@router.post("/{token}/pay")
async def pay(token: Token, page: Page) -> Response:
    """Start the chosen method (or show the live one again): back to the page, which shows the QR or the link."""
    form = await page.form(page_bound=framed_form_token(page, token))
    user_agent = page.request.headers.get("user-agent", "")
    scene = scene_for(user_agent)
    if scene == "jsapi":  # a form post in the app: its H5 page (JSAPI starts from the authorisation's return)
        scene = "h5"
    method = form.get("method", "")
    if not offered([method], user_agent):  # another wallet than this app's own: not payable here
        return _redirect(page, f"/checkout/{token}", error="method_unavailable")
    request_id = form.get("request_id", "") or secrets.token_hex(12)
    coupon_id = form.get("coupon_id", "")
    try:
        if coupon_id and page.session is not None:  # the signed-in payer's coupon: the payment is theirs
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", coupon_id):
                return _redirect(page, f"/checkout/{token}", error="coupon_unavailable")
            await page.web.gateway.pay_checkout_as_user(
                page.session.token,
                token,
                method=method,
                scene=scene,
                request_id=f"{request_id[:56]}-{method[:7]}",
                coupon_id=coupon_id,
                client_ip=page.browser_ip(),
            )
        else:
            await page.web.gateway.start_checkout_payment(
                token, method=method, scene=scene, request_id=request_id, client_ip=page.browser_ip()
            )
    except GatewayProblem as exc:
        log.info("checkout payment refused", code=exc.code, status=exc.status)
        if exc.code == "checkout_session_not_found":
            return _not_found(page)
        return _redirect(page, f"/checkout/{token}", error=_error_code(exc.code))
    return _redirect(page, f"/checkout/{token}")


@router.post("/{token}/wallet")
async def pay_with_wallet(token: Token, page: Page) -> Response:
    """The signed-in payer confirms with the payment PIN (checked by the gateway, never logged or echoed)."""
    form = await page.form()
    if page.session is None:
        return page.redirect(f"/checkout/{token}", error="sign_in_required")
    pin = form.get("pin", "")
    if not re.fullmatch(r"[0-9]{6}", pin):
        return page.redirect(f"/checkout/{token}", error="pin_required")
    gateway = page.web.gateway
    try:
        await gateway.verify_pin(page.session.token, pin)
        await gateway.pay_checkout_with_wallet(
            page.session.token, token, request_id=form.get("request_id", "") or secrets.token_hex(12)
        )
    except GatewayProblem as exc:
        log.info("checkout wallet payment refused", code=exc.code, status=exc.status)
        return page.redirect(f"/checkout/{token}", error=_error_code(exc.code))
    return page.redirect(f"/checkout/{token}/result")


@router.get("/{token}/oauth/{channel}")
async def oauth_return(token: Token, channel: OAUTH_CHANNEL, page: Page) -> Response:
    """Where the app's authorisation sends the payer back (WeChat `?code=&state=`, Alipay `?auth_code=&state=`):
    the payment starts with the code, which the cashier redeems for the payer's openid / buyer_id with the
    merchant's credentials after checking the state it signed for this page; then the page shows the app's pay
    sheet. The state makes this GET safe to replay: a reload answers the same payment, a used state is refused."""
    query = page.request.query_params
    code, state = query.get("code") or query.get("auth_code") or "", query.get("state", "")
    if not (re.fullmatch(r"[A-Za-z0-9_-]{1,128}", code) and re.fullmatch(r"[A-Za-z0-9]{1,128}", state)):
        return _redirect(page, f"/checkout/{token}", error="authorise_again")  # the payer refused, or a bad link
    if app_wallet(page.request.headers.get("user-agent", "")) != channel:
        return _redirect(page, f"/checkout/{token}", error="method_unavailable")
    try:
        await page.web.gateway.start_checkout_payment(
            token,
            method=channel,
            scene="jsapi",
            request_id=f"oauth_{state[:40]}",
            client_ip=page.browser_ip(),
            oauth=(code, state),
        )
    except GatewayProblem as exc:
        log.info("checkout in-app payment refused", code=exc.code, status=exc.status)
        if exc.code == "checkout_session_not_found":
            return _not_found(page)
        return _redirect(page, f"/checkout/{token}", error=_error_code(exc.code))
    return _redirect(page, f"/checkout/{token}")


def _error_code(code: str) -> str:
    if code in PIN_CODES or code == "insufficient_funds":
        return code
    if code in ("checkout_method_not_available", "no_route_available", "unsupported_scene"):
        return "method_unavailable"
    if code == "checkout_payment_in_progress":
        return "in_progress"
    if code == "payer_mismatch":
        return "payer_mismatch"
    if code.startswith("checkout_oauth_"):
        return "authorise_again"
    if code.startswith("coupon") or code in ("threshold_not_met", "stock_exhausted"):
        return "coupon_unavailable"
    return "failed"


@router.post("/{token}/result")
async def result_posted(token: Token, page: Page) -> Response:
    """UnionPay sends the payer back by posting its signed result here (frontUrl). It changes nothing — the
    cashier learns the outcome from the channel's back notification and queries — so it is answered with the
    result page's address, read by GET like every other return."""
    return page.redirect(f"/checkout/{token}/result")


@router.get("/{token}/result")
async def result(token: Token, page: Page) -> Response:
    """Where a channel's H5 page sends the payer back, and where the live page goes once paid."""
    view = await _view(page, token)
    if view is None:
        return _not_found(page)
    if view["status"] == "open" and _epoch(view["expires_at"]) > _epoch(view["server_time"]):
        payment = view.get("payment") or {}
        if payment.get("status") in ("created", "processing"):
            return page.render("checkout_result.html", view=view, token=token, state="pending", **_framing(page, view))
        return _redirect(page, f"/checkout/{token}")
    if view["status"] != "completed":
        return page.render("checkout_expired.html", view=view, **_framing(page, view))
    return page.render("checkout_result.html", view=view, token=token, state="paid", **_framing(page, view))


def _status(view: dict[str, Any]) -> dict[str, Any]:
    payment = view.get("payment") or {}
    expired = view["status"] == "expired" or _epoch(view["expires_at"]) <= _epoch(view["server_time"])
    return {
        "status": "expired" if expired and view["status"] == "open" else view["status"],
        "payment": payment.get("status"),
        "payment_id": payment.get("id"),
    }


@router.get("/{token}/status")
async def status(token: Token, page: Page) -> Response:
    """The 2 s polling fallback of the live page: only states, never the merchant's data."""
    view = await _view(page, token)
    if view is None:
        return JSONResponse({"status": "missing"}, status_code=404)
    return JSONResponse(_status(view))


@router.get("/{token}/events")
async def events(token: Token, page: Page) -> Response:
    """Server-sent events: one `status` event on every change, until paid or expired (or SSE_MAX_SECONDS)."""
    gateway, browser_ip = page.web.gateway, page.browser_ip()

    async def stream() -> AsyncIterator[bytes]:
        last: dict[str, Any] | None = None
        deadline = time.monotonic() + SSE_MAX_SECONDS
        yield b"retry: 2000\n\n"
        while time.monotonic() < deadline:
            try:
                current = _status(await gateway.checkout_page(token, browser_ip=browser_ip))
            except (GatewayProblem, GatewayUnavailable):
                return  # the browser falls back to polling
            if current != last:
                last = current
                yield f"event: status\ndata: {json.dumps(current)}\n\n".encode()
            else:
                yield b": waiting\n\n"  # a comment line: keeps the stream (and every proxy on the way) open
            if current["status"] != "open":
                return
            await asyncio.sleep(SSE_STEP_SECONDS)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
