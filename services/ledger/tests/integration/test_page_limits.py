"""`page_size_max` bounds every ledger list (before, each list had its own fixed maximum)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Ledger

PAGE_SIZE_MAX = 2


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/accounts", {"holder_id": "usr_1"}),
        ("/v1/accounts/{account}/statement", {}),
        ("/v1/wallet/entitlements/changes", {}),
    ],
)
async def test_a_limit_above_page_size_max_is_refused(path: str, query: dict[str, str], ledger_factory: Any) -> None:
    ledger: Ledger = await ledger_factory(page_size_max=PAGE_SIZE_MAX)
    account = await ledger.open(holder_id="usr_1")
    url = path.format(account=account)
    r = await ledger.client.get(url, params={**query, "limit": PAGE_SIZE_MAX + 1})
    assert r.status_code == 422, (path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed" and r.json()["limit_max"] == PAGE_SIZE_MAX
    assert (await ledger.client.get(url, params={**query, "limit": PAGE_SIZE_MAX})).status_code == 200
    assert (await ledger.client.get(url, params=query)).status_code == 200  # the default is capped by the maximum


async def test_pages_of_the_maximum_walk_all_accounts(ledger_factory: Any) -> None:
    ledger: Ledger = await ledger_factory(page_size_max=PAGE_SIZE_MAX)
    opened = {await ledger.open(holder_id="usr_1", code=code) for code in ("2301", "2302", "2303")}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(opened)):
        params = {"holder_id": "usr_1", **({"cursor": cursor} if cursor else {})}
        page = (await ledger.client.get("/v1/accounts", params=params)).json()
        assert len(page["accounts"]) <= PAGE_SIZE_MAX
        seen += [a["id"] for a in page["accounts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(opened)
