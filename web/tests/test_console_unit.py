"""The consoles without a platform (seconds): the documented role matrix is the gateway's, every console route names
a known permission, the dashboard's figures are exact integer arithmetic, the guard refuses before any call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gateway.domain import staff as roles
from web.app import create_app
from web.config import Settings
from web.console import PUBLIC, REGISTRY, SIGNED_IN, console_sealer, declared_routes
from web.pages.console_merchant import dashboard_figures
from web.sessions import Sealer, Session

DOCS = Path(__file__).resolve().parents[2] / "docs" / "consoles.md"


def documented_matrix(console: str) -> dict[str, set[str]]:
    """role → permissions, from the table in docs/consoles.md between `<!-- matrix:<console> -->` and the end."""
    text = DOCS.read_text()
    block = text.split(f"<!-- matrix:{console} -->", 1)[1].split("<!-- /matrix -->", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
    roles = rows[0][1:]
    matrix: dict[str, set[str]] = {role: set() for role in roles}
    for row in rows[2:]:
        for role, cell in zip(roles, row[1:], strict=True):
            if cell == "✓":
                matrix[role].add(row[0])
    return matrix


def test_the_documented_matrix_is_the_gateways() -> None:
    assert documented_matrix("merchant") == {role: set(perms) for role, perms in roles.MERCHANT_ROLES.items()}
    assert documented_matrix("operator") == {role: set(perms) for role, perms in roles.PLATFORM_ROLES.items()}


def test_every_console_route_is_registered_with_a_known_permission() -> None:
    paths = declared_routes(create_app(Settings()))
    assert ("GET", "/console/merchant/payments") in paths and paths <= set(REGISTRY), sorted(paths - set(REGISTRY))
    known = {*roles.MERCHANT_PERMISSIONS, *roles.PLATFORM_PERMISSIONS, PUBLIC, SIGNED_IN}
    assert all(rule.permission in known for rule in REGISTRY.values()), [
        r for r in REGISTRY.values() if r.permission not in known
    ]


def test_the_api_map_refuses_what_staff_never_do() -> None:
    assert roles.api_permission("GET", "/v1/payments/pay_1") == "payments.read"
    assert roles.api_permission("POST", "/v1/payments/pay_1/refunds") == "refunds.create"
    assert roles.api_permission("POST", "/v1/payments") is None  # staff never create payments
    assert roles.api_permission("POST", "/v1/payments/pay_1/close") is None
    assert roles.api_permission("POST", "/v1/payouts") == "payouts.create"
    assert roles.api_permission("GET", "/v1/platform/merchants/x") is None
    assert roles.api_permission("GET", "/v1/settlement/reconciliation-items") == "platform.reconciliation.read"


def test_dashboard_figures_are_exact() -> None:
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    payments = [
        {"created_at": "2026-12-06T01:00:00+00:00", "status": "succeeded", "amount_minor": 1_001, "channel": "alipay",
         "refunded_minor": 1, "fee_minor": 4},
        {"created_at": "2026-12-03T01:00:00+00:00", "status": "failed", "amount_minor": 500, "channel": "alipay"},
        {"created_at": "2026-11-10T01:00:00+00:00", "status": "succeeded", "amount_minor": 7, "channel": "wechatpay"},
        {"created_at": "2026-12-06T02:00:00+00:00", "status": "pending", "amount_minor": 9, "channel": None},
    ]  # fmt: skip
    today, week, month = dashboard_figures(payments, now=now)["windows"]
    assert (today["count"], today["volume_minor"], today["success_permille"]) == (2, 1_001, 1000)
    assert (week["count"], week["volume_minor"], week["success_permille"]) == (3, 1_001, 500)
    assert (month["count"], month["volume_minor"], month["success_permille"], month["fee_minor"]) == (4, 1_008, 666, 4)
    assert month["by_channel"]["alipay"] == {"volume_minor": 1_001, "count": 2, "succeeded": 1, "refunded_minor": 1}


@pytest.fixture
async def pages() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(gateway_url="http://127.0.0.1:9", cookie_secure=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pages") as client:
            yield client


async def test_the_guard_refuses_before_calling_anyone(pages: httpx.AsyncClient) -> None:
    r = await pages.get("/console/merchant/payments")
    assert (r.status_code, r.headers["location"]) == (303, "/console/sign-in?reason=no_session")
    assert (await pages.post("/console/merchant/payouts", data={"amount": "1"})).status_code == 401
    assert (await pages.post("/console/sign-in", data={"email": "a@b.c", "password": "x"})).status_code == 403
    # A wallet cookie is not a console cookie (another key): still not signed in.
    key = Settings().session_key.get_secret_value()
    wallet = Sealer(key).seal(Session("usr_1", "utk_1.x", 4e9, 4e9, "c"))
    pages.cookies.set("juhe_console", wallet)
    r = await pages.get("/console/merchant")
    assert r.status_code == 303
    assert console_sealer(key).open(wallet) is None
