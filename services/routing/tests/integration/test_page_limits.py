"""`page_size_max` bounds every routing list (before, each list had its own fixed `le=200`); every list answers
the one list shape (`data`, `has_more`, `next_cursor`) and refuses what it would otherwise silently ignore."""

from __future__ import annotations

from typing import Any

import pytest

from services.routing.tests.integration.conftest import ACTOR, ROUTES, seed

PAGE_SIZE_MAX = 3
LISTS = ("/v1/channel-routes", "/v1/contracts", "/v1/fee-rates", "/v1/rules", "/v1/rules/rule_x/history", "/v1/audit")
ALL_LISTS = (*LISTS, "/v1/special-rate-applications")


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
    assert len(first["data"]) == PAGE_SIZE_MAX and first["next_cursor"] and first["has_more"] is True
    rest = (await client.get("/v1/channel-routes", params={"cursor": first["next_cursor"]}, headers=ACTOR)).json()
    seen = [r["route_id"] for r in first["data"] + rest["data"]]
    assert sorted(seen) == sorted(r["route_id"] for r in ROUTES) and rest["next_cursor"] is None
    assert rest["has_more"] is False


async def test_every_list_has_the_one_shape_and_refuses_garbage(make_app: Any) -> None:
    """A cursor no list gave out, a query parameter the list does not take and a filter value outside its enum
    are 422 problems, never an empty or unfiltered 200 (one app for every list: the checks read nothing)."""
    client = await make_app()
    for path in ALL_LISTS:
        page = (await client.get(path, headers=ACTOR)).json()
        assert set(page) >= {"data", "has_more", "next_cursor"} and page["has_more"] is False, (path, page)
        bad_cursor = await client.get(path, params={"cursor": "'; drop table x; --"}, headers=ACTOR)
        assert bad_cursor.status_code == 422 and bad_cursor.json()["code"] == "validation_failed", bad_cursor.text
        assert bad_cursor.headers["content-type"].startswith("application/problem+json")
        unknown = await client.get(path, params={"stauts": "x", "after": "a"}, headers=ACTOR)
        assert unknown.status_code == 422, (path, unknown.text)
        assert unknown.json()["code"] == "unknown_parameter" and unknown.json()["parameters"] == ["after", "stauts"]
    for path, params in (
        ("/v1/rules", {"scope": "planet"}),
        ("/v1/audit", {"resource_type": "payment"}),
        ("/v1/special-rate-applications", {"status": "maybe"}),
    ):
        r = await client.get(path, params=params, headers=ACTOR)
        assert r.status_code == 422 and r.json()["code"] == "validation_failed", (path, r.text)
