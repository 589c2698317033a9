"""`page_size_max` bounds every routing list (before, each list had its own fixed `le=200`)."""

from __future__ import annotations

from typing import Any

import pytest

from services.routing.tests.integration.conftest import ACTOR, ROUTES, seed

PAGE_SIZE_MAX = 3
LISTS = ("/v1/channel-routes", "/v1/contracts", "/v1/fee-rates", "/v1/rules", "/v1/rules/rule_x/history", "/v1/audit")


@pytest.mark.parametrize("path", LISTS)
async def test_a_limit_above_page_size_max_is_refused(path: str, make_app: Any) -> None:
    client = await make_app(page_size_max=PAGE_SIZE_MAX)
    r = await client.get(path, params={"limit": PAGE_SIZE_MAX + 1}, headers=ACTOR)
    assert r.status_code == 422, (path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed" and r.json()["limit_max"] == PAGE_SIZE_MAX
    assert (await client.get(path, params={"limit": PAGE_SIZE_MAX}, headers=ACTOR)).status_code == 200
    assert (await client.get(path, headers=ACTOR)).status_code == 200  # the default fits under the maximum


async def test_pages_of_the_maximum_walk_the_whole_list(make_app: Any) -> None:
    """A larger maximum than the old fixed 200 is honoured end to end, and paging at the maximum works."""
    client = await make_app(page_size_max=PAGE_SIZE_MAX)
    await seed(client)
    first = (await client.get("/v1/channel-routes", headers=ACTOR)).json()
    assert len(first["items"]) == PAGE_SIZE_MAX and first["next_cursor"]
    rest = (await client.get("/v1/channel-routes", params={"after": first["next_cursor"]}, headers=ACTOR)).json()
    seen = [r["route_id"] for r in first["items"] + rest["items"]]
    assert sorted(seen) == sorted(r["route_id"] for r in ROUTES) and rest["next_cursor"] is None
