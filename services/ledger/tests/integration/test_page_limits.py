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
    kinds = (("user_wallet", "2301"), ("user_prepaid", "2302"), ("user_credit", "2303"))
    opened = {await ledger.open(kind, code, holder_id="usr_1") for kind, code in kinds}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(opened)):
        params = {"holder_id": "usr_1", **({"cursor": cursor} if cursor else {})}
        page = (await ledger.client.get("/v1/accounts", params=params)).json()
        assert len(page["data"]) <= PAGE_SIZE_MAX
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(opened)


async def test_every_ledger_list_answers_the_one_shape(ledger_factory: Any) -> None:
    """`{data, has_more, next_cursor}` (libs.common.paging) on the ledger's internal lists: a page of exactly the
    rows left says so (no empty page after it), a cursor the list never gave out and an unknown query parameter
    are 422. The wallet history's own case is in test_wallet_api (it needs a KYC'd holder)."""
    ledger: Ledger = await ledger_factory(page_size_max=PAGE_SIZE_MAX)
    first, second = [
        await ledger.open(kind, code, holder_id="usr_shape")
        for kind, code in (("user_wallet", "2301"), ("user_prepaid", "2302"))
    ]
    for amount in (100, 200):
        assert (await ledger.transfer(first, second, amount)).status_code == 201

    whole = (await ledger.client.get("/v1/accounts", params={"holder_id": "usr_shape"})).json()
    assert [a["id"] for a in whole["data"]] == sorted([first, second])
    assert whole["has_more"] is False and whole["next_cursor"] is None  # exactly a full page: the last one
    for url, query in (("/v1/accounts", {"holder_id": "usr_shape"}), (f"/v1/accounts/{first}/statement", {})):
        head = (await ledger.client.get(url, params={**query, "limit": 1})).json()
        assert len(head["data"]) == 1 and head["has_more"] is True and head["next_cursor"], (url, head)
        tail = (await ledger.client.get(url, params={**query, "limit": 1, "cursor": head["next_cursor"]})).json()
        assert len(tail["data"]) == 1 and tail["has_more"] is False and tail["next_cursor"] is None, (url, tail)
        assert tail["data"][0] != head["data"][0]

    lists = [
        ("/v1/accounts", {"holder_id": "usr_shape"}),
        (f"/v1/accounts/{first}/statement", {}),
        ("/v1/wallet/entitlements/changes", {}),
    ]
    for url, query in lists:
        for bad, code in (({"cursor": "garbage!"}, "validation_failed"), ({"stauts": "x"}, "unknown_parameter")):
            r = await ledger.client.get(url, params={**query, **bad})
            assert r.status_code == 422 and r.json()["code"] == code, (url, bad, r.text)
    empty = (await ledger.client.get("/v1/wallet/entitlements/changes")).json()
    assert empty == {"data": [], "has_more": False, "next_cursor": None}
