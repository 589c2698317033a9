"""Wiring of the web process: pages, static files, health and metrics, security headers. No logic here.

No database: sessions are sealed cookies (web/sessions.py) and the platform is reached through the
gateway's public API only (web/clients/gateway.py). `/readyz` is ready when the gateway answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.logging import configure_logging, get_logger
from libs.common.web import UnstorableTextGuard, install_observability
from web import console, i18n
from web.clients.gateway import Gateway, GatewayUnavailable
from web.config import Settings
from web.pages import (
    WebRuntime,
    checkout,
    console_merchant,
    console_operator,
    content_security_policy,
    page_context,
    payment_links,
    wallet,
)
from web.sessions import Sealer

HERE = Path(__file__).parent
STATIC_CACHE_SECONDS = 3600
log = get_logger("juhe.web")


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


class SecurityHeaders:
    """Pure ASGI: the headers every answer carries (a page may set its own CSP `frame-ancestors` first)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                wanted = {
                    b"content-security-policy": content_security_policy("'none'").encode(),
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",  # sign-in links carry a secret in the URL
                    b"cross-origin-opener-policy": b"same-origin",
                    b"permissions-policy": b"camera=(), microphone=(), geolocation=(), payment=()",
                    b"cache-control": f"public, max-age={STATIC_CACHE_SECONDS}".encode() if static else b"no-store",
                }
                headers += [(k, v) for k, v in wanted.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings.service_name, level=settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = Gateway(settings)
        app.state.web = WebRuntime(
            settings=settings,
            gateway=gateway,
            sealer=Sealer(settings.session_key.get_secret_value()),
            templates=templates(),
            catalogues=i18n.load_catalogues(),
        )
        log.info("web started", port=settings.port, gateway=settings.gateway_url)
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(
        title="Juhe pages", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith("/static/"):
            return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
        page = page_context(request)
        return page.render("wallet_error.html", status_code=exc.status_code, code=f"http_{exc.status_code}")

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("page failed", path=request.url.path)
        return page_context(request).render("wallet_error.html", status_code=500, code="failed")

    async def on_invalid(request: Request, exc: Exception) -> Response:
        return page_context(request).render("wallet_error.html", status_code=400, code="http_400")

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        """The gateway is down or slow: a page that says to try again (nothing was done), never a crash."""
        log.warning("gateway unavailable", path=request.url.path, error=str(exc)[:200])
        return page_context(request).render("wallet_error.html", status_code=503, code="unavailable")

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(GatewayUnavailable, on_unavailable)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_crash)
    app.add_middleware(UnstorableTextGuard)
    app.add_middleware(SecurityHeaders)
    install_observability(app, settings.service_name)

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        ok = await request.app.state.web.gateway.gateway_alive()
        checks = {"gateway": "ok" if ok else "unreachable"}
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(wallet.router)
    app.include_router(checkout.router)
    console.install(app, console_merchant.shared, console_merchant.routes, console_operator.routes)
    app.include_router(payment_links.router)
    return app
