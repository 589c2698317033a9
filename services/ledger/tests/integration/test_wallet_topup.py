"""The wallet top-up contract (docs/contracts.md §4), ledger side: the consumer credits a paid `wallet_topup` of the
collecting merchant to the wallet (§3.7, once, with `top_up.credited`) instead of §3.1, and treats every other
merchant's "top-up" as a normal payment; top-up orders refuse before the cashier is asked, and answer 503 when it
cannot be."""

from __future__ import annotations

import json
from typing import Any

from libs.common.embedded import free_port
from libs.common.events import Envelope
from services.ledger.tests.integration.test_cashier_consumer import accounts_of, eventually, publish, succeeded
from services.ledger.tests.integration.wallet_harness import PERSON_IDS, problem, resident_id

TOPUP_MERCHANT = "mch_platform_topup"


async def open_person(ledger: Any, holder_id: str) -> None:
    body = {
        "holder_id": holder_id,
        "holder_type": "person",
        "name": "李四",
        "resident_id": resident_id(next(PERSON_IDS)),
        "phone": "13900139000",
    }
    r = await ledger.client.post("/v1/wallet/holders", json=body)
    assert r.status_code == 201, r.text


def top_up_paid(payment_id: str, merchant_id: str, holder_id: str | None, **extra: Any) -> Envelope:
    return succeeded(
        payment_id,
        merchant_id,
        purpose="wallet_topup",
        wallet_holder_id=holder_id,
        split=None,
        profit_sharing=False,
        **extra,
    )


async def wallet_events(ledger: Any) -> list[dict[str, Any]]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(ledger.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT payload FROM outbox WHERE topic = 'ledger.wallet' ORDER BY seq"))
            return [json.loads(bytes(r[0])) for r in rows.all()]
    finally:
        await engine.dispose()


async def balance_of(ledger: Any, holder_id: str) -> int:
    r = await ledger.client.get(f"/v1/wallet/holders/{holder_id}/my-wallet")
    assert r.status_code == 200, r.text
    return int(r.json()["totals"].get("CNY", {}).get("posted_balance_minor", 0))


async def test_paid_top_up_credits_the_wallet_once_and_other_merchants_post_as_payments(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    ledger = await ledger_factory(wallet_topup_merchant_id=TOPUP_MERCHANT)
    await open_person(ledger, "usr_tu_1")
    paid = top_up_paid("pay_tu_1", TOPUP_MERCHANT, "usr_tu_1")
    again = Envelope(type=paid.type, source="cashier", subject=paid.subject, data=paid.data)  # new id, same event
    foreign = top_up_paid("pay_tu_2", "mch_other", "usr_tu_1")  # another merchant's "top-up": its own money
    ghost = top_up_paid("pay_tu_3", TOPUP_MERCHANT, "usr_nobody")  # no such wallet: kept by the collecting merchant
    big = top_up_paid("pay_tu_4", TOPUP_MERCHANT, "usr_tu_1", amount_minor=150_000)  # above the level-0 single limit
    # The top-up first: the wallet then opens the channel's chart accounts, and §3.1 of the next events must
    # find them (same key, same body as the API's) rather than fail on a key "taken by another body".
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", paid, paid, again)

    async def top_up_seen() -> bool:
        return await ledger.count("inbox") == 2

    await eventually(top_up_seen, "the top-up to be consumed")
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", foreign, ghost, big)

    async def all_seen() -> bool:
        return await ledger.count("inbox") == 5

    await eventually(all_seen, "the consumer to see every event")
    assert await balance_of(ledger, "usr_tu_1") == 10_000 + 150_000
    platform = await accounts_of(ledger, "platform")
    # §3.7 twice (fee 25 each, absorbed by the platform) and §3.1 twice (foreign, ghost)
    assert platform["channel_clearing:wechatpay"]["balances"]["posted_balance_minor"] == (
        (10_000 - 25) + (150_000 - 25) + 2 * (10_000 - 25)
    )
    assert (await accounts_of(ledger, "mch_other"))["merchant_pending:"]["balances"]["posted_balance_minor"] == 9_940
    collecting = await accounts_of(ledger, TOPUP_MERCHANT)
    assert collecting["merchant_pending:"]["balances"]["posted_balance_minor"] == 9_940  # only the ghost
    events = await wallet_events(ledger)
    assert sorted((e["type"], e["data"]["payment_id"]) for e in events) == [
        ("top_up.credited", "pay_tu_1"),
        ("top_up.credited", "pay_tu_4"),
    ]
    op = await ledger.client.get("/v1/wallet/operations", params={"kind": "top_up", "idempotency_key": "pay_tu_4"})
    assert op.json()["details"]["limits_bypassed"] is True, op.text
    await ledger.assert_verified()


async def test_top_up_orders_refuse_before_asking_the_cashier(ledger_factory: Any) -> None:
    dead_cashier = f"http://127.0.0.1:{free_port()}"  # nothing listens: every call that reaches it is a 503
    unconfigured = await ledger_factory()
    await open_person(unconfigured, "usr_to_0")
    order = {"amount_minor": 5_000, "scene": "native_qr", "idempotency_key": "k1"}
    problem(
        await unconfigured.client.post("/v1/wallet/holders/usr_to_0/top-up-orders", json=order),
        503,
        "top_up_unavailable",
    )

    ledger = await ledger_factory(cashier_url=dead_cashier, wallet_topup_merchant_id=TOPUP_MERCHANT)
    await open_person(ledger, "usr_to_1")
    url = "/v1/wallet/holders/usr_to_1/top-up-orders"
    problem(await ledger.client.post("/v1/wallet/holders/usr_none/top-up-orders", json=order), 404, "holder_not_found")
    problem(await ledger.client.post(url, json={**order, "amount_minor": 100_001}), 409, "limit_exceeded")
    problem(await ledger.client.post(url, json={**order, "scene": "wallet"}), 422, "validation_failed")
    assert await ledger.count("wallet_topup_orders") == 0
    # allowed: recorded, then the cashier cannot be reached → 503, safe to retry with the same key
    problem(await ledger.client.post(url, json=order), 503, "cashier_unavailable")
    problem(await ledger.client.post(url, json=order), 503, "cashier_unavailable")
    assert await ledger.count("wallet_topup_orders") == 1
    problem(await ledger.client.post(url, json={**order, "amount_minor": 6_000}), 409, "idempotency_key_reused")
    problem(
        await ledger.client.get("/v1/wallet/holders/usr_to_1/top-up-orders/wto_nope"), 404, "top_up_order_not_found"
    )
