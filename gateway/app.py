"""Wiring of the gateway service: routers, the gatekeeper, the API catalogue, loops. No logic here."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.routing import Route

from gateway import worker
from gateway.api.docs_pages import HeadAsGet, serve_offline_docs
from gateway.api.gatekeeper import Gatekeeper
from gateway.api.routes import api_versions, internal, onboarding, platform, proxy, staff, wallet_users
from gateway.api.routes.web_pages import WebPagesRoute
from gateway.clients.catalog import ApiCatalog
from gateway.clients.identity import IdentityProvider
from gateway.clients.proxy import Upstreams
from gateway.clients.services import PlatformCalls
from gateway.clients.web_pages import WebPages
from gateway.config import Settings
from gateway.context import GatewayContext
from gateway.flows.identities import Identities
from gateway.flows.onboarding import OnboardingFlow
from gateway.flows.staff import StaffConsole
from gateway.flows.wallet_users import WalletUsers
from gateway.store import guards
from libs.common.web import Runtime, create_service_app

TITLE = "Juhe gateway"


def create_app(settings: Settings) -> FastAPI:
    async def on_startup(runtime: Runtime) -> None:
        upstreams = Upstreams(settings)
        identities = Identities(runtime.engine, settings)
        guard_pool = await guards.open_guard_pool(runtime.engine.url, size_max=settings.guard_connections_max)
        gatekeeper = Gatekeeper(settings, guard_pool, identities, upstreams)
        catalog = ApiCatalog(settings, upstreams.clients, own_document)
        wallet = WalletUsers(identities, settings)
        identity_provider = IdentityProvider(
            settings.identity_base_url,
            secret=settings.identity_secret.get_secret_value(),
            timeout_seconds=settings.identity_timeout_seconds,
        )
        internal_secret = settings.internal_token_secret.get_secret_value()
        calls = PlatformCalls(upstreams.clients, internal_token_secret=internal_secret)
        web_pages = WebPages(
            settings.web_url,
            timeout_seconds=settings.upstream_timeout_seconds,
            body_size_max_bytes=settings.body_size_max_bytes,
        )
        runtime.context = GatewayContext(
            settings=settings,
            identities=identities,
            gatekeeper=gatekeeper,
            catalog=catalog,
            wallet_users=wallet,
            staff=StaffConsole(identities, settings, check_web_client=wallet.check_web_client),
            onboarding=OnboardingFlow(identities, calls, identity_provider, settings),
            web_pages=web_pages,
        )
        # Not awaited: `/openapi.json` waits for the first pass instead (clients/catalog.py says why).
        refresher = asyncio.create_task(catalog.run())

        async def stop() -> None:
            refresher.cancel()
            with contextlib.suppress(BaseException):
                await refresher
            await gatekeeper.close()
            await upstreams.close()
            await web_pages.close()
            await identity_provider.close()
            await guard_pool.close()

        runtime.closers.append(stop)

    app = create_service_app(
        settings,
        title=TITLE,
        routers=[
            platform.router,
            onboarding.router,
            api_versions.router,
            wallet_users.router,
            staff.router,
            internal.router,
            proxy.router,
        ],
        subscriptions=worker.subscriptions(settings),
        background=worker.background_tasks(settings),
        on_startup=on_startup,
        refuse_unstorable_text=False,  # the gatekeeper applies the rule after its size and authentication checks
    )

    serve_offline_docs(app, title=TITLE)
    app.add_middleware(HeadAsGet, router=app.router)
    own_routers = [
        platform.router,
        onboarding.router,
        api_versions.router,
        wallet_users.router,
        staff.router,
        internal.router,
    ]
    app.router.routes.insert(0, proxy.FirstMatchProxyRoute(proxy.own_prefixes(own_routers)))
    app.router.routes.insert(0, WebPagesRoute(settings.web_prefixes))
    own: list[dict[str, Any]] = []

    def own_document() -> dict[str, Any]:
        """The gateway's own routes never change after start-up: built once."""
        if not own:
            own.append(get_openapi(title=TITLE, version=app.version, routes=app.routes))
        return own[0]

    def public_document() -> dict[str, Any]:
        """`/openapi.json` and `/docs` show the merged public API, not only the gateway's own routes."""
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        context = runtime.context if runtime is not None else None  # None until the start-up has built it
        return context.catalog.document() if isinstance(context, GatewayContext) else own_document()

    app.openapi = public_document  # type: ignore[method-assign]
    _wait_for_catalog(app)
    return app


def _wait_for_catalog(app: FastAPI) -> None:
    """FastAPI's `/openapi.json` endpoint, first waiting for the catalogue's first pass (fetched in the
    background since start-up), so the first reader gets the merged document, not the gateway's routes alone."""
    index, route = next(
        (i, r) for i, r in enumerate(app.router.routes) if isinstance(r, Route) and r.path == app.openapi_url
    )
    assert isinstance(route, Route)
    serve = route.endpoint

    async def openapi(request: Request) -> Response:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        context = runtime.context if runtime is not None else None
        if isinstance(context, GatewayContext):
            await context.catalog.first_pass()
        answer: Response = await serve(request)
        return answer

    app.router.routes[index] = Route(route.path, openapi, include_in_schema=False)
