"""The route of the pages' half of the one public origin (`web_prefixes`: `/wallet`, `/checkout`, `/pay`,
`/static`, `/console`), forwarded to the web process by `clients/web_pages.py`.

A plain route tried first with a prefix test (like the API's `FirstMatchProxyRoute`), so a page request is not
matched against every API route's regex.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway.context import gateway_context
from gateway.domain.access import PrefixIndex

PAGE_METHODS = ["GET", "HEAD", "POST"]


async def forward_page(request: Request) -> Response:
    return await gateway_context(request.app.state.runtime).web_pages.forward(request)


class WebPagesRoute(Route):
    """Matches a path under one of `prefixes` (on a "/" boundary) before any other route is tried."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        super().__init__("/{path:path}", forward_page, methods=PAGE_METHODS, include_in_schema=False)
        self.index = PrefixIndex(prefixes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and self.index.match(scope["path"]) is not None:
            if scope["method"] not in PAGE_METHODS:
                return Match.PARTIAL, {"endpoint": self.endpoint, "path_params": {}, "route": self}
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {"path": scope["path"]}, "route": self}
        return Match.NONE, {}
