"""The consoles' guard: who is signed in, which permission each page needs, CSRF on every form.

Every console route is declared through a `ConsoleRouter` with the one permission it needs (or `PUBLIC` for the
sign-in pages, `SIGNED_IN` for a member's own account). That declaration is the route→permission registry
(`REGISTRY`): docs/consoles.md shows it, and the permission-matrix test walks it against every role. The guard
(`console_guard`, used by every registered route) then, on the server and for every request:

1. opens the console session cookie (sealed, `/console` only, a key of its own derived from the session key);
2. asks the gateway who the member is now (`GET /v1/console/me`: the session is alive, its idle deadline moves on,
   the role is the current one, so a role change or a removal holds from the next request);
3. refuses a member of the other console (a merchant's staff on operator pages and the reverse);
4. refuses, with 403 and nothing done, a role without the route's permission;
5. for a POST, reads the form and checks its CSRF token against the session's (constant time); a missing, foreign
   or replayed-from-another-session token is 403.

The merchant a merchant page acts for is the member's (`ctx.member.merchant_id`, from the gateway), never a value
from the URL or the form; the gateway also checks the member's role on every API call the page makes.

Use: ``routes = ConsoleRouter("/console/merchant", console="merchant")`` then
``@routes.get("/payments", "payments.read") async def payments(ctx: Console) -> Response: ...``.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from libs.common.logging import get_logger
from web.clients.console import ConsoleApi
from web.clients.gateway import GatewayProblem
from web.pages import PageContext, page_context
from web.sessions import Sealer, Session

log = get_logger("juhe.web.console")

CONSOLE_COOKIE = "juhe_console"
CONSOLE_PATH = "/console"
SIGN_IN_PATH = "/console/sign-in"
ConsoleKind = Literal["merchant", "operator", "any"]
PUBLIC = "public"  # no session needed (sign-in, invitation, password reset)
SIGNED_IN = "signed_in"  # any signed-in member (their own account, sign-out)


@dataclass(frozen=True, slots=True)
class RouteRule:
    method: str
    path: str
    permission: str  # a permission of gateway/domain/staff.py, or PUBLIC / SIGNED_IN
    console: ConsoleKind


# (method, path template) → rule: every console route, filled in as routers are declared.
REGISTRY: dict[tuple[str, str], RouteRule] = {}


class ConsoleRefusal(Exception):
    """Raised by the guard: the page to show instead (sign-in redirect, 401, 403), nothing done."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@functools.lru_cache(maxsize=4)
def console_sealer(session_key_b64: str) -> Sealer:
    """Console cookies are sealed under a key of their own (HKDF of the session key), so a wallet cookie can never be
    opened as a console one or the reverse."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"juhe console session").derive(
        base64.b64decode(session_key_b64)
    )
    return Sealer(base64.b64encode(key).decode())


@dataclass
class ConsolePage(PageContext):
    """A page of a console: the console session (its own cookie, path /console) instead of the wallet's."""

    ended: bool = False

    def finish(self, response: Response) -> None:
        console_session, self.session = self.session, None
        try:
            super().finish(response)  # language and pre-session CSRF cookies; the wallet cookie is left alone
        finally:
            self.session = console_session
        s = self.settings
        if self.ended or console_session is None:
            if self.ended:
                response.delete_cookie(
                    CONSOLE_COOKIE, path=CONSOLE_PATH, secure=s.cookie_secure, httponly=True, samesite="strict"
                )
            return
        touched = console_session.touched(time.time(), s.session_idle_seconds)
        sealed = console_sealer(s.session_key.get_secret_value()).seal(touched)
        response.set_cookie(
            CONSOLE_COOKIE,
            sealed,
            max_age=max(int(touched.expires_epoch - time.time()), 1),
            secure=s.cookie_secure,
            httponly=True,
            samesite="strict",
            path=CONSOLE_PATH,
        )

    def start_session(self, session: Session) -> None:
        self.session = session
        self.ended = False
        self.cookies_to_clear.append("juhe_csrf")

    def end_session(self) -> None:
        self.session = None
        self.ended = True


def console_page(request: Request) -> ConsolePage:
    base = page_context(request)
    sealer = console_sealer(base.settings.session_key.get_secret_value())
    session = sealer.open(request.cookies.get(CONSOLE_COOKIE))
    return ConsolePage(base.request, base.web, base.locale, session, set_lang_cookie=base.set_lang_cookie)


@dataclass
class ConsoleContext:
    """What a guarded route gets: the page, the member as the gateway knows them now, the API as that member, and
    (for a POST) the form, whose CSRF token was already checked."""

    page: ConsolePage
    rule: RouteRule
    member: dict[str, Any] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> ConsoleApi:
        assert self.page.session is not None
        return ConsoleApi(self.page.web.gateway, self.page.session.token, self.page.browser_ip())

    def api_as_web(self) -> ConsoleApi:
        """The web process itself (sign-in, one-time links): no member yet."""
        return ConsoleApi(self.page.web.gateway, None, self.page.browser_ip())

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(self.member.get("permissions", ()))

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def merchant_id(self) -> str:
        """The merchant of the signed-in member: the only merchant a merchant page ever acts for."""
        merchant_id = self.member.get("merchant_id")
        if not merchant_id:
            raise ConsoleRefusal(403, "not_allowed")
        return str(merchant_id)

    def render(self, template: str, status_code: int = 200, **values: Any) -> Response:
        return self.page.render(template, status_code, ctx=self, member=self.member, **values)

    def redirect(self, path: str, **query: str) -> Response:
        return self.page.redirect(path, **query)


def _rule_of(request: Request) -> RouteRule:
    route = request.scope.get("route")
    rule = REGISTRY.get((request.method.upper(), getattr(route, "path", "")))
    if rule is None:  # a console route declared around the registry: refused, and the matrix test fails
        raise ConsoleRefusal(403, "not_allowed")
    return rule


async def console_guard(request: Request) -> ConsoleContext:
    """The checks of the module docstring, in that order; a refusal renders a page and changes nothing."""
    rule = _rule_of(request)
    page = console_page(request)
    ctx = ConsoleContext(page, rule)
    if rule.permission == PUBLIC:
        if request.method == "POST":
            ctx.form = await page.form()  # before a session: the double-submit CSRF cookie
        return ctx
    if page.session is None:
        raise ConsoleRefusal(401, "no_session")
    try:
        ctx.member = await ctx.api.me()
    except GatewayProblem as exc:
        if exc.status == 401:
            raise ConsoleRefusal(401, "expired") from exc
        raise
    if rule.console != "any" and ctx.member.get("kind") != rule.console:
        raise ConsoleRefusal(403, "not_allowed")
    if rule.permission != SIGNED_IN and rule.permission not in ctx.permissions:
        log.info("console permission refused", path=request.url.path, role=ctx.member.get("role"))
        raise ConsoleRefusal(403, "not_allowed")
    if request.method == "POST":
        ctx.form = await _checked_form(page)
    return ctx


async def _checked_form(page: ConsolePage) -> dict[str, str]:
    """The session's CSRF token must come back in the form (PageContext.form compares against `page.session`)."""
    try:
        return await page.form()
    except HTTPException as exc:
        if exc.status_code == 403:
            raise ConsoleRefusal(403, "csrf") from exc
        raise


Console = Annotated[ConsoleContext, Depends(console_guard)]


class ConsoleRouter:
    """An APIRouter whose every route names its permission, recorded in `REGISTRY` (the route→permission map)."""

    def __init__(self, prefix: str, *, console: ConsoleKind) -> None:
        self.prefix = prefix
        self.console = console
        self.router = APIRouter(prefix=prefix, include_in_schema=False)

    def route(self, method: str, path: str, permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        full = self.prefix + path
        REGISTRY[(method, full)] = RouteRule(method, full, permission, self.console)
        return self.router.api_route(path, methods=[method])

    def get(self, path: str, permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("GET", path, permission)

    def post(self, path: str, permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route("POST", path, permission)


async def on_refusal(request: Request, exc: Exception) -> Response:
    """Not signed in: a page to sign in (a GET goes there directly); not allowed or a bad form: 403 page."""
    assert isinstance(exc, ConsoleRefusal)
    page = console_page(request)
    if exc.status == 401:
        page.end_session()
        if request.method == "GET":
            response: Response = RedirectResponse(f"{SIGN_IN_PATH}?reason={exc.reason}", status_code=303)
            page.finish(response)
            return response
    return page.render("console/refused.html", status_code=exc.status, reason=exc.reason)


def install(app: FastAPI, *routers: ConsoleRouter) -> None:
    """Called once by web/app.py: the refusal page and the consoles' routers."""
    app.add_exception_handler(ConsoleRefusal, on_refusal)
    for routes in routers:
        app.include_router(routes.router)


def declared_routes(app: FastAPI, prefix: str = CONSOLE_PATH) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under `prefix`, included routers walked: what the registry must cover."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(list(inner.routes))
                continue
            path = str(getattr(route, "path", ""))
            if path == prefix or path.startswith(prefix + "/"):
                found.update((method, path) for method in getattr(route, "methods", None) or ())

    walk(list(app.routes))
    return found


# The fields people compare in an audit entry's record before and after, in this order (the API has the whole record).
AUDIT_VALUE_KEYS_SHOWN = (
    "rate_id",
    "route_id",
    "merchant_id",
    "payment_id",
    "payout_id",
    "refund_id",
    "key_id",
    "new_key_id",
    "rate_bps",
    "amount_minor",
    "currency",
    "refund_approval_threshold_minor",
    "valid_from",
    "valid_until",
    "role",
    "email",
    "status",
    "suspended",
    "suspension_reason",
    "decided_by",
    "decision_reason",
    "attempt_count",
)


def audit_summary(value: Any) -> str:
    """A record before or after, as a short line of the fields people compare."""
    if not isinstance(value, dict):
        return "" if value is None else str(value)[:200]
    shown = [f"{k}={value[k]}" for k in AUDIT_VALUE_KEYS_SHOWN if value.get(k) is not None]
    return ", ".join(shown)[:300]


def audit_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit log entries with `before_text` / `after_text` (their summaries) for the consoles' audit pages."""
    return [
        e | {"before_text": audit_summary(e.get("before")), "after_text": audit_summary(e.get("after"))}
        for e in entries
    ]


def epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
