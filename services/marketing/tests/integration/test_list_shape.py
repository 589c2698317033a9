"""Marketing's lists answer the one list shape (libs.common.paging): `{data, has_more, next_cursor}`, a page of
exactly the rows left is the last (no empty page after it), a cursor the list never gave out, a filter value
outside its enum and an unknown query parameter are 422 with nothing read. One marketing start for all."""

from __future__ import annotations

from .conftest import Marketing, code

USER_LISTS = ("/v1/marketing/me/coupons", "/v1/marketing/me/points/earnings", "/v1/marketing/me/topup-bonuses")
MANAGER_LISTS = ("/v1/marketing/campaigns", "/v1/marketing/stocks", "/v1/marketing/points-rules")


async def test_every_marketing_list_answers_the_one_shape(marketing: Marketing) -> None:
    mine = marketing.merchant("mch_shape")
    made = [await marketing.campaign(mine) for _ in range(2)]

    whole = (await marketing.get("/v1/marketing/campaigns?limit=2", mine)).json()
    assert [c["campaign_id"] for c in whole["data"]] == sorted(made, reverse=True)  # newest first, as before
    assert whole["has_more"] is False and whole["next_cursor"] is None
    head = (await marketing.get("/v1/marketing/campaigns?limit=1", mine)).json()
    assert head["has_more"] is True and head["next_cursor"] == head["data"][0]["campaign_id"]
    tail = (await marketing.get(f"/v1/marketing/campaigns?limit=1&cursor={head['next_cursor']}", mine)).json()
    assert [c["campaign_id"] for c in tail["data"]] == [min(made)]
    assert tail["has_more"] is False and tail["next_cursor"] is None

    lists = [(path, mine) for path in MANAGER_LISTS] + [(path, marketing.user()) for path in USER_LISTS]
    lists.append(("/v1/marketing/topup-promotions", marketing.operator()))
    for path, who in lists:
        empty_or_not = (await marketing.get(path, who)).json()
        assert set(empty_or_not) == {"data", "has_more", "next_cursor"}, (path, empty_or_not)
        assert code(await marketing.get(f"{path}?cursor=not%20a%20cursor", who)) == "validation_failed", path
        assert code(await marketing.get(f"{path}?stauts=used", who)) == "unknown_parameter", path
    assert code(await marketing.get("/v1/marketing/me/coupons?status=spent", marketing.user())) == "validation_failed"

    offers = "/v1/internal/marketing/users/usr_1/applicable-coupons?merchant_id=mch_shape&order_amount_minor=100"
    assert (await marketing.get(offers, {})).json() == {"data": [], "has_more": False, "next_cursor": None}
    assert code(await marketing.get(f"{offers}&cursor=x", {})) == "unknown_parameter"  # ranked: no cursor
