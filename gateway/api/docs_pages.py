"""API docs that work offline, and HEAD on every GET resource of the gateway.

**Docs.** FastAPI's default `/docs` and `/redoc` pages load Swagger UI and ReDoc from a CDN, so they are
blank on a machine without internet access (a developer on a plane, a locked-down data centre). The
gateway serves the same pages with the bundles of the pinned `fastapi-offline` package (installed from
PyPI with everything else; only its `static/` folder is used) under `/docs/assets/`, so the pages name
no other origin. ReDoc is told not to fetch Google Fonts.

**HEAD.** HTTP says a HEAD answers exactly as the GET would, without the body (RFC 9110 §9.3.2); FastAPI
routes answer 405 instead. `HeadAsGet` (plain ASGI) drops the body of every HEAD answer and, for the
gateway's own routes (which match GET only), runs the request as a GET. Proxied paths keep HEAD as the
method the client signed; the gatekeeper forwards them upstream as GET (services' routes are GET-only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DEFAULT_DOC_PATHS = frozenset({DOCS_PATH, REDOC_PATH, OAUTH2_REDIRECT_PATH})


def serve_offline_docs(app: FastAPI, *, title: str) -> None:
    """Replace FastAPI's CDN-backed doc pages with the same pages on local assets."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in DEFAULT_DOC_PATHS]
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route(DOCS_PATH, swagger_ui, include_in_schema=False)
    app.add_api_route(OAUTH2_REDIRECT_PATH, oauth2_redirect, include_in_schema=False)
    app.add_api_route(REDOC_PATH, redoc, include_in_schema=False)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


class HeadAsGet:
    """HEAD answered like GET without the body (module doc)."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(self._as_get_if_only_get_matches(scope), receive, send_without_body)

    def _as_get_if_only_get_matches(self, scope: Scope) -> Scope:
        """In the router's order: the first route taking HEAD itself (the proxy, static assets) keeps it;
        the first taking only GET (the gateway's own routes, before the catch-all) gets a GET."""
        as_get: dict[str, Any] = {**scope, "method": "GET"}
        for route in self.router.routes:
            if route.matches(scope)[0] is Match.FULL:
                return scope
            if route.matches(as_get)[0] is Match.FULL:
                return as_get
        return scope
