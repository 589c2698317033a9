"""The web process without a platform behind it: catalogues complete, sessions sealed, CSRF enforced, strict
headers on every answer, locale negotiation, amounts parsed exactly. In-process (ASGI), no browser."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from jinja2.ext import babel_extract

from web import i18n
from web.app import create_app
from web.config import Settings
from web.sessions import Sealer, Session

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
DEAD_GATEWAY = "http://127.0.0.1:9"


def template_messages() -> set[str]:
    found: set[str] = set()
    options = {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}
    for path in TEMPLATES.glob("*.html"):
        with path.open("rb") as f:
            for _, _, message, _ in babel_extract(f, ("_", "gettext"), [], options):
                text = message[0] if isinstance(message, tuple) else message
                assert text is not None, f"{path.name}: a gettext call without a literal message"
                found.add(text)
    return found


def test_every_template_message_has_a_chinese_translation() -> None:
    zh = i18n.load_catalogues()["zh_CN"]
    messages = template_messages()
    assert len(messages) > 100
    missing = sorted(m for m in messages if zh.gettext(m) == m)
    assert not missing, f"add these to web/i18n/zh_CN/LC_MESSAGES/messages.po: {missing}"


@pytest.mark.parametrize(
    ("asked", "cookie", "accept", "chosen"),
    [
        (None, None, None, "zh_CN"),
        (None, None, "en-US,en;q=0.9", "en"),
        (None, None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
        (None, None, "fr-FR,en;q=0.5", "en"),
        (None, None, "zh-TW", "zh_CN"),
        (None, "en", "zh-CN", "en"),
        ("zh_CN", "en", "en", "zh_CN"),
        ("xx", None, "en", "en"),
    ],
)
def test_locale_negotiation(asked: str | None, cookie: str | None, accept: str | None, chosen: str) -> None:
    assert i18n.choose_locale(asked, cookie, accept, "zh_CN") == chosen


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("300", 30_000),
        ("300.5", 30_050),
        ("0.01", 1),
        (" 1,000.00 ", 100_000),
        ("0", None),
        ("1.234", None),
        ("-1", None),
        ("1e3", None),
        ("٣", None),
        ("", None),
        ("9" * 13, None),
    ],
)
def test_amounts_are_parsed_exactly(text: str, minor: int | None) -> None:
    assert i18n.parse_amount_minor(text) == minor


def test_a_session_cookie_cannot_be_read_forged_or_kept_past_its_deadlines() -> None:
    sealer = Sealer(Settings().session_key.get_secret_value())
    now = time.time()
    session = Session("usr_a", "utk_x.secret", now + 600, now + 60, "csrf-token")
    sealed = sealer.seal(session)
    assert "utk_x" not in sealed and "usr_a" not in sealed
    assert sealer.open(sealed, now=now) == session
    assert sealer.open(sealed, now=now + 61) is None  # idle
    assert sealer.open(sealed[:-4] + "AAAA", now=now) is None  # tampered
    other = Sealer("b3RoZXItd2ViLXNlc3Npb24ta2V5LTMyLWJ5dGVzISE=")
    assert other.open(sealed, now=now) is None  # another key
    touched = session.touched(now + 590, idle_seconds=900)
    assert touched.idle_until_epoch == session.expires_epoch  # never past the user token's expiry


@pytest.fixture
async def pages() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(gateway_url=DEAD_GATEWAY, log_json=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://pay.example.com") as client:
            yield client


async def test_every_answer_has_strict_headers(pages: httpx.AsyncClient) -> None:
    for path in ("/wallet", "/wallet/sign-in?token=wsl_x.y", "/static/app.js", "/nowhere", "/livez"):
        r = await pages.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    assert (await pages.get("/wallet")).headers["cache-control"] == "no-store"
    page = (await pages.get("/wallet/sign-in?token=wsl_x.y")).text
    assert '<script src="/static/app.js" defer></script>' in page and "<script>" not in page and "style=" not in page


async def test_forms_without_the_csrf_token_are_refused(pages: httpx.AsyncClient) -> None:
    shown = await pages.get("/wallet/sign-in?token=wsl_x.y")
    cookie = shown.cookies["juhe_csrf"]
    set_cookie = shown.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "Secure" in set_cookie and "SameSite=lax" in set_cookie
    for form in (
        {"token": "wsl_x.y"},
        {"token": "wsl_x.y", "csrf": "guess"},
        {"token": "wsl_x.y", "csrf": cookie + "x"},
    ):
        r = await pages.post("/wallet/sign-in", data=form)
        assert r.status_code == 403, form
    # With the right token the form reaches the gateway, which is down here: the page says so, no session.
    r = await pages.post("/wallet/sign-in", data={"token": "wsl_x.y", "csrf": cookie})
    assert r.status_code in (401, 503) and "juhe_session=" not in r.headers.get("set-cookie", "")


async def test_money_pages_need_a_session(pages: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/wallet"),
        ("GET", "/wallet/pin"),
        ("GET", "/wallet/history"),
        ("POST", "/wallet/withdraw"),
        ("POST", "/wallet/pin"),
        ("POST", "/wallet/repay"),
    ):
        r = await pages.request(method, path)
        assert r.status_code == 401 and "请从 App 登录" in r.text, path


async def test_readyz_follows_the_gateway(pages: httpx.AsyncClient) -> None:
    r = await pages.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["gateway"] == "unreachable"
    assert (await pages.get("/metrics")).status_code == 200
