"""What every page shares: the locale, the session, rendering with security headers, forms with CSRF.

Rules every page follows (docs/web.md "How to add a page"): render through `PageContext.render`, read
forms through `PageContext.form` (which checks the CSRF token), never put user data in a script, send
people back with 303 after a POST (post/redirect/get), and name outcomes by code (`?done=…`/`?error=…`)
so no text from the query is ever reflected.
"""

from __future__ import annotations

import gettext
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

from web import i18n
from web.clients.gateway import Gateway
from web.config import Settings
from web.sessions import CSRF_COOKIE, LANG_COOKIE, SESSION_COOKIE, Sealer, Session, csrf_matches, new_csrf

LANG_COOKIE_SECONDS = 365 * 86400
FORM_FIELDS_MAX = 32  # the operator console's one-call onboarding form has 26 (legal details, account, channel)
FORM_BYTES_MAX = 16_384


@dataclass
class WebRuntime:
    """Built once at start-up; kept on `app.state.web`."""

    settings: Settings
    gateway: Gateway
    sealer: Sealer
    templates: Environment
    catalogues: dict[str, gettext.NullTranslations]


@dataclass
class PageContext:
    request: Request
    web: WebRuntime
    locale: str
    session: Session | None
    set_lang_cookie: bool = False
    cookies_to_set: list[tuple[str, str, int]] = field(default_factory=list)
    cookies_to_clear: list[str] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.web.settings

    def gettext(self, message: str) -> str:
        return self.web.catalogues[self.locale].gettext(message)

    def browser_ip(self) -> str:
        # Behind the gateway the browser's address arrives as X-Forwarded-For (the gateway overwrites it).
        forwarded = self.request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        return forwarded or (self.request.client.host if self.request.client else "unknown")

    def lang_links(self) -> list[dict[str, Any]]:
        """The language switch: the same page (path and query) in each language."""
        query = {k: v for k, v in self.request.query_params.items() if k not in ("lang", "done", "error")}
        return [
            {
                "code": code,
                "name": name,
                "lang": i18n.HTML_LANG[code],
                "current": code == self.locale,
                "href": self.request.url.path + "?" + urlencode({**query, "lang": code}),
            }
            for code, name in i18n.all_locales()
        ]

    def render(
        self,
        template: str,
        status_code: int = 200,
        *,
        frame_ancestors: str = "'none'",
        form_targets: tuple[str, ...] = (),
        **values: Any,
    ) -> HTMLResponse:
        translations = self.web.catalogues[self.locale]
        env = self.web.templates
        # Rendering is synchronous: installing this request's catalogue right before it cannot race another.
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
        csrf = self.session.csrf if self.session else values.pop("pre_session_csrf", None)
        body = env.get_template(template).render(
            page=self,
            locale=self.locale,
            html_lang=i18n.HTML_LANG[self.locale],
            csrf=csrf,
            session=self.session,
            money=lambda minor, currency="CNY": i18n.money(minor, currency, self.locale),
            number=lambda value: i18n.number(value, self.locale),
            when=lambda value: i18n.when(value, self.locale),
            **values,
        )
        response = HTMLResponse(body, status_code=status_code)
        response.headers["Content-Security-Policy"] = content_security_policy(frame_ancestors, form_targets)
        self.finish(response)
        return response

    def redirect(self, path: str, **query: str) -> RedirectResponse:
        target = path + ("?" + urlencode(query) if query else "")
        response = RedirectResponse(target, status_code=303)
        self.finish(response)
        return response

    def finish(self, response: Response) -> None:
        s = self.settings
        if self.set_lang_cookie:
            response.set_cookie(
                LANG_COOKIE,
                self.locale,
                max_age=LANG_COOKIE_SECONDS,
                secure=s.cookie_secure,
                httponly=True,
                samesite="lax",
                path="/",
            )
        for name, value, max_age in self.cookies_to_set:
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                secure=s.cookie_secure,
                httponly=True,
                samesite="strict" if name == SESSION_COOKIE else "lax",
                path="/",
            )
        for name in self.cookies_to_clear:
            response.delete_cookie(name, path="/", secure=s.cookie_secure, httponly=True, samesite="strict")
        if self.session is not None and SESSION_COOKIE not in self.cookies_to_clear:
            touched = self.session.touched(time.time(), s.session_idle_seconds)
            if not any(name == SESSION_COOKIE for name, _, _ in self.cookies_to_set):
                response.set_cookie(
                    SESSION_COOKIE,
                    self.web.sealer.seal(touched),
                    max_age=max(int(touched.expires_epoch - time.time()), 1),
                    secure=s.cookie_secure,
                    httponly=True,
                    samesite="strict",
                    path="/",
                )

    def start_session(self, session: Session) -> None:
        self.session = session
        lifetime = max(int(session.expires_epoch - time.time()), 1)
        self.cookies_to_set.append((SESSION_COOKIE, self.web.sealer.seal(session), lifetime))
        self.cookies_to_clear.append(CSRF_COOKIE)

    def end_session(self) -> None:
        self.session = None
        self.cookies_to_clear.append(SESSION_COOKIE)

    def pre_session_csrf(self) -> str:
        """The double-submit token for forms shown before sign-in (kept if the browser has one)."""
        token = self.request.cookies.get(CSRF_COOKIE) or new_csrf()
        self.cookies_to_set.append((CSRF_COOKIE, token, 3600))
        return token

    async def form(self, *, page_bound: str | None = None) -> dict[str, str]:
        """The posted form, after its CSRF token is checked: the session's, or before sign-in the double-submit
        cookie's. A form that fails the check is refused with 403 and nothing is done.

        `page_bound`: a token derived from the page's own secret URL, accepted too — for a page framed on another
        site (the checkout in juhe.js's iframe), where the browser sends no cookie of this site at all."""
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > FORM_BYTES_MAX:
            raise HTTPException(413, "form too large")
        raw = await self.request.form(max_fields=FORM_FIELDS_MAX, max_files=0)
        values = {k: v for k, v in raw.items() if isinstance(v, str)}
        expected = self.session.csrf if self.session else self.request.cookies.get(CSRF_COOKIE)
        posted = values.get("csrf")
        if not csrf_matches(posted, expected) and not (page_bound and csrf_matches(posted, page_bound)):
            raise HTTPException(403, "csrf")
        return values


def content_security_policy(frame_ancestors: str, form_targets: tuple[str, ...] = ()) -> str:
    """Strict: every resource from this origin, no inline script or style, forms only to this origin — and to
    the channel origins a page names (`form_targets`, e.g. the checkout's UnionPay form), only on that page."""
    form_action = " ".join(("'self'", *form_targets))
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        f"form-action {form_action}; base-uri 'none'; object-src 'none'; frame-ancestors {frame_ancestors}"
    )


def page_context(request: Request) -> PageContext:
    web: WebRuntime = request.app.state.web
    asked = request.query_params.get("lang")
    remembered = request.cookies.get(LANG_COOKIE)
    locale = i18n.choose_locale(asked, remembered, request.headers.get("accept-language"), web.settings.default_locale)
    session = web.sealer.open(request.cookies.get(SESSION_COOKIE))
    return PageContext(request, web, locale, session, set_lang_cookie=asked in i18n.LOCALES and asked != remembered)
