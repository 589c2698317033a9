"""`page_size_max` bounds every list endpoint of settlement (it used to be a setting nothing read)."""

from __future__ import annotations

from typing import Any

import pytest

from services.settlement.app import create_app

PAGE_SIZE_MAX = 5
MERCHANT = {"X-Juhe-Merchant-Id": "mch_p"}
LISTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("/v1/payouts", MERCHANT),
    ("/v1/statements/batches", MERCHANT),
    ("/v1/settlement/payouts", {}),
    ("/v1/settlement/withdrawals", {}),
    ("/v1/settlement/batches", {}),
    ("/v1/settlement/reconciliation-items", {}),
    ("/v1/settlement/reconciliation-exceptions", {}),
)


@pytest.mark.parametrize(("path", "headers"), LISTS)
async def test_a_limit_above_page_size_max_is_refused(
    path: str, headers: dict[str, str], migrated_database: Any, service_settings: Any, running_apps: Any
) -> None:
    settings = service_settings(
        "settlement",
        database_url=await migrated_database("settlement"),
        ledger_url="http://127.0.0.1:9",
        role="api",
        page_size_max=PAGE_SIZE_MAX,
    )
    client = await running_apps(create_app(settings))
    r = await client.get(path, params={"limit": PAGE_SIZE_MAX + 1}, headers=headers)
    assert r.status_code == 422, (path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed" and r.json()["limit_max"] == PAGE_SIZE_MAX
    assert (await client.get(path, params={"limit": PAGE_SIZE_MAX}, headers=headers)).status_code == 200
    assert (await client.get(path, headers=headers)).status_code == 200  # the default fits under the maximum


async def test_every_list_has_the_one_shape_and_refuses_garbage(
    migrated_database: Any, service_settings: Any, running_apps: Any
) -> None:
    """`{data, has_more, next_cursor}` on every list; a cursor no list gave out, an unknown query parameter and
    a filter value outside its enum are 422 problems (they used to be an empty or unfiltered 200)."""
    settings = service_settings(
        "settlement", database_url=await migrated_database("settlement"), ledger_url="http://127.0.0.1:9", role="api"
    )
    client = await running_apps(create_app(settings))
    for path, headers in (*LISTS, ("/v1/settlement/calendar?year=2026", {})):
        page = await client.get(path, headers=headers)
        assert page.status_code == 200 and page.json() == {"data": [], "has_more": False, "next_cursor": None}, path
        if "calendar" not in path:
            bad = await client.get(path, params={"cursor": "x' or 1=1"}, headers=headers)
            assert bad.status_code == 422 and bad.json()["code"] == "validation_failed", (path, bad.text)
        unknown = await client.get(path, params={"stauts": "failed"}, headers=headers)
        assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_parameter", (path, unknown.text)
        assert unknown.json()["parameters"] == ["stauts"]
        assert unknown.headers["content-type"].startswith("application/problem+json")
    for path, params, headers in (
        ("/v1/payouts", {"status": "lost"}, MERCHANT),
        ("/v1/settlement/withdrawals", {"status": "lost"}, {}),
        ("/v1/settlement/reconciliation-items", {"outcome": "lost"}, {}),
        ("/v1/settlement/reconciliation-exceptions", {"outcome": "lost"}, {}),
        ("/v1/settlement/reconciliation-exceptions", {"state": "lost"}, {}),
    ):
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "validation_failed", (path, r.text)
