"""Settlement's public and platform paths (docs/contracts.md §5): the public paths, the platform-only guard inside
the service, and the cashier's split check (docs/contracts.md §1) with every refusal it can answer."""

from __future__ import annotations

from typing import Any

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from services.settlement.tests.integration.conftest import Harness


def token(
    h: Harness,
    *,
    merchant_id: str | None = None,
    platform: str | None = None,
    user: str | None = None,
    service: str | None = None,
) -> dict[str, str]:
    secret = h.context.settings.internal_token_secret.get_secret_value()
    who = mint_identity_token(
        secret, key_id="test", merchant_id=merchant_id, platform=platform, user=user, service=service
    )
    return {IDENTITY_HEADER: who}


async def setup_rule(h: Harness) -> None:
    for rid, kind, holder in (
        ("r_shop", "merchant", "mch_1"),
        ("r_tch", "partner", "tch_1"),
        ("r_agent", "partner", "agt_1"),
        ("r_plat", "platform", "platform"),
        ("r_other", "partner", "x_1"),
    ):
        assert (
            await h.client.put(f"/v1/settlement/receivers/{rid}", json={"kind": kind, "holder_id": holder})
        ).is_success
    assert (
        await h.client.put("/v1/settlement/merchants/mch_1/fee-rate", json={"platform_fee_rate_bps": 100})
    ).is_success
    rule = {
        "shares": [
            {"receiver_id": "r_tch", "percent_bps": 3000},
            {"receiver_id": "r_agent", "fixed_minor": 500},
            {"receiver_id": "r_plat", "percent_bps": 200},
        ],
        "remainder_receiver_id": "r_shop",
    }
    assert (await h.client.put("/v1/settlement/merchants/mch_1/split-rule", json=rule)).is_success


def check(split: list[tuple[str, int]], amount: int = 10_000, merchant: str = "mch_1") -> dict[str, Any]:
    return {
        "merchant_id": merchant,
        "amount_minor": amount,
        "currency": "CNY",
        "split": [{"receiver_id": r, "amount_minor": a} for r, a in split],
    }


async def test_split_checks(settlement_only: Harness) -> None:
    h = settlement_only
    await setup_rule(h)
    # 10,000 with a 1 % platform fee: the merchant keeps 9,900; r_tch ≤ 30 % of it = 2,970; r_agent ≤ 500
    ok = await h.client.post("/v1/internal/split-checks", json=check([("r_tch", 2970), ("r_agent", 500)]))
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    # the rule's remainder receiver takes no cap, only the total does
    assert (await h.client.post("/v1/internal/split-checks", json=check([("r_shop", 9900)]))).status_code == 200
    cases = [
        (check([("r_other", 1)]), 422, "unknown_receiver"),
        (check([("r_nobody", 1)]), 422, "unknown_receiver"),
        (check([("r_tch", 2971)]), 422, "share_exceeds_rule"),
        (check([("r_agent", 501)]), 422, "share_exceeds_rule"),
        (check([("r_shop", 9000), ("r_tch", 901)]), 422, "shares_exceed_total"),
        (check([("r_tch", 1), ("r_tch", 1)]), 422, "duplicate_receiver"),
        (check([("r_tch", 1)], merchant="mch_none"), 404, "split_rule_not_found"),
        (check([("r_tch", 0)]), 422, "validation_failed"),
        (check([]), 422, "validation_failed"),
    ]
    for body, status, code in cases:
        r = await h.client.post("/v1/internal/split-checks", json=body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_platform_only_paths_refuse_merchants_and_users(settlement_only: Harness) -> None:
    h = settlement_only
    await setup_rule(h)
    platform_paths = [
        "/v1/settlement/receivers/r_tch",
        "/v1/settlement/merchants/mch_1/split-rule",
        "/v1/settlement/merchants/mch_1/cycle",
        "/v1/settlement/calendar?year=2026",
        "/v1/settlement/batches",
        "/v1/settlement/payouts",
        "/v1/settlement/reconciliation-items",
        "/v1/settlement/reconciliation-report?bill_date=2026-11-24",
    ]
    for path in platform_paths:
        assert (await h.client.get(path)).status_code == 200, path  # internal call, no identity
        assert (await h.client.get(path, headers=token(h, platform="plt_1"))).status_code == 200, path
        acting = token(h, platform="plt_1", merchant_id="mch_1")  # the platform acting for a merchant
        assert (await h.client.get(path, headers=acting)).status_code == 200, path
        for caller in (token(h, merchant_id="mch_1"), token(h, user="usr_1")):
            r = await h.client.get(path, headers=caller)
            assert r.status_code == 403 and r.json()["code"] == "forbidden", path
        r = await h.client.get(path, headers={"X-Juhe-Merchant-Id": "mch_1"})
        assert r.status_code == 403, path
    r = await h.client.post("/v1/internal/split-checks", json=check([("r_tch", 1)]), headers=token(h, merchant_id="m"))
    assert r.status_code == 403
    r = await h.client.post(
        "/v1/internal/split-checks", json=check([("r_tch", 1)]), headers=token(h, service="cashier")
    )
    assert r.status_code == 200
    # the old paths are gone
    for old in ("/v1/admin/receivers/r_tch", "/v1/merchant/statement", "/v1/merchant/payouts/po_1"):
        assert (await h.client.get(old, headers={"X-Juhe-Merchant-Id": "mch_1"})).status_code == 404, old
    assert (await h.client.post("/v1/bank/notify", content=b"{}")).status_code == 404
    # merchant paths need a merchant: a platform without one is refused
    r = await h.client.get("/v1/statements/current", headers=token(h, platform="plt_1"))
    assert r.status_code == 403 and r.json()["code"] == "merchant_scope_required"
    assert (
        await h.client.get("/v1/statements/current", headers=token(h, platform="p", merchant_id="mch_1"))
    ).is_success
