"""The public API of the services behind the gateway: one catch-all route into the gatekeeper.

A plain Starlette route, not a FastAPI one: the handler takes the raw request and needs none of
FastAPI's dependency solving or validation, which would run on every proxied call for nothing.

`FirstMatchProxyRoute` is the same route, tried first with a prefix test: otherwise every proxied call
was matched against every other route's regex, twice (FastAPI's included routers match once to select and
once to dispatch), about a twentieth of the gateway's CPU per call in the profile. Paths under the
gateway's own `/v1` prefixes (`/v1/platform`) are left to the router as before, and the catch-all below
stays registered last for everything the fast route declines (unknown methods → 405 as before).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway.context import gateway_context
from gateway.domain.access import PrefixIndex

router = APIRouter()
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
PROXY_PATH = "/v1/{path:path}"
PUBLIC_PREFIX = "/v1/"


async def proxy(request: Request) -> Response:
    return await gateway_context(request.app.state.runtime).gatekeeper.handle(request)


router.add_route(PROXY_PATH, proxy, methods=PROXIED_METHODS, include_in_schema=False)


class FirstMatchProxyRoute(Route):
    def __init__(self, own_prefixes: Iterable[str]) -> None:
        super().__init__(PROXY_PATH, proxy, methods=PROXIED_METHODS, include_in_schema=False)
        self.own = PrefixIndex(own_prefixes)
        self.proxied_methods = frozenset(PROXIED_METHODS)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            if (
                path.startswith(PUBLIC_PREFIX)
                and scope["method"] in self.proxied_methods
                and self.own.match(path) is None
            ):
                return Match.FULL, {"endpoint": self.endpoint, "path_params": {"path": path[4:]}, "route": self}
        return Match.NONE, {}


def own_prefixes(routers: Iterable[APIRouter]) -> list[str]:
    """`/v1/<first segment>` of every gateway route under `/v1/` (today: `/v1/platform`)."""
    return sorted(
        {
            "/".join(path.split("/")[:3])
            for r in routers
            for path in (str(getattr(route, "path", "")) for route in r.routes)
            if path.startswith(PUBLIC_PREFIX)
        }
    )
