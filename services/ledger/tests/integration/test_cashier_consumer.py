"""The ledger consumes the cashier's `payment.succeeded` / `refund.succeeded` from the real broker and posts
§3.1 / §3.3 exactly once, whatever is redelivered."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from libs.common.events import Envelope
from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.kafka import topic_name
from libs.common.settings import DEMO_INTERNAL_TOKEN_SECRET
from services.ledger.tests.integration.conftest import body

WAIT_SECONDS_MAX = 30


async def publish(bootstrap: str, namespace: str, topic: str, *events: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic_name(namespace, topic), event.to_bytes(), key=event.subject.encode())
    finally:
        await producer.stop()


async def eventually(check: Any, what: str) -> Any:
    async with asyncio.timeout(WAIT_SECONDS_MAX):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.1)
    raise AssertionError(what)


async def accounts_of(ledger: Any, holder_id: str, **params: Any) -> dict[str, dict[str, Any]]:
    response = await ledger.client.get("/v1/accounts", params={"holder_id": holder_id, **params})
    assert response.status_code == 200, response.text
    return {f"{a['kind']}:{a['metadata'].get('channel', '')}": a for a in response.json()["data"]}


def succeeded(payment_id: str, merchant_id: str, **extra: Any) -> Envelope:
    data = {
        "payment_id": payment_id,
        "merchant_id": merchant_id,
        "amount_minor": 10000,
        "currency": "CNY",
        "scene": "native_qr",
        "channel": "wechatpay",
        "fee_minor": 25,
        "platform_fee_minor": 60,
        "channel_trade_no": "4200000001",
        "route_id": "wx_direct",
        **extra,
    }
    return Envelope(type="payment.succeeded", source="cashier", subject=payment_id, data=data)


async def test_payment_and_refund_post_once_under_redelivery(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    ledger = await ledger_factory()
    paid = succeeded("pay_c1", "mch_c1")
    again = Envelope(type=paid.type, source="cashier", subject=paid.subject, data=paid.data)  # new id, same event
    wallet = succeeded("pay_w1", "mch_c1", scene="wallet", channel="wallet")
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", paid, paid, again, wallet)
    refund = Envelope(
        type="refund.succeeded",
        source="cashier",
        subject="re_c1",
        data={
            "refund_id": "re_c1",
            "payment_id": "pay_c1",
            "merchant_id": "mch_c1",
            "amount_minor": 4000,
            "currency": "CNY",
            "channel": "wechatpay",
            "payment_amount_minor": 10000,
            "payment_fee_minor": 25,
            "payment_platform_fee_minor": 60,
            "payment_refunded_minor": 4000,
        },
    )
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.refunds", refund, refund)

    async def all_seen() -> bool:
        return await ledger.count("inbox") == 4  # paid, again, wallet, refund (duplicates skipped by the inbox)

    await eventually(all_seen, "the consumer to see every event")
    transfers = await ledger.client.get(
        "/v1/transfers", params={"source": "cashier", "idempotency_key": "pay_c1:succeeded"}
    )
    assert transfers.status_code == 200 and transfers.json()["reference"] == "pay_c1"
    assert await ledger.count("transfers") == 2  # payment + refund; the wallet payment is not posted here

    merchant = await accounts_of(ledger, "mch_c1")
    platform = await accounts_of(ledger, "platform")
    balance = {k: a["balances"]["posted_balance_minor"] for k, a in {**merchant, **platform}.items()}
    # 9940 − (4000 − 24); fee 60 − 24; clearing 9975 − (4000 − 10); channel fee 25 − 10
    assert balance == {
        "merchant_pending:": 5964,
        "platform_fee_income:": 36,
        "channel_clearing:wechatpay": 5985,
        "channel_fee_expense:wechatpay": 15,
    }
    await ledger.assert_verified()


async def test_accounts_opened_by_the_chart_key_are_reused(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    """An account opened through the API with the chart key and body (as the cashier's wallet connector does)
    is the one the consumer posts to: one merchant_pending per merchant and currency."""
    ledger = await ledger_factory()
    opened = await ledger.client.post(
        "/v1/accounts",
        json={
            "holder_id": "mch_c2",
            "currency": "CNY",
            "kind": "merchant_pending",
            "code": "2201",
            "metadata": {},
            "idempotency_key": "chart:merchant_pending:mch_c2:CNY",
        },
    )
    assert opened.status_code == 201, opened.text
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", succeeded("pay_c2", "mch_c2"))

    async def posted() -> bool:
        return await ledger.count("transfers") == 1

    await eventually(posted, "the payment to be posted")
    merchant = await accounts_of(ledger, "mch_c2")
    assert list(merchant) == ["merchant_pending:"]
    assert merchant["merchant_pending:"]["id"] == opened.json()["id"]
    assert merchant["merchant_pending:"]["balances"]["posted_balance_minor"] == 9940
    await ledger.assert_verified()


async def test_test_money_is_booked_apart_from_live_money(
    ledger_factory: Any, platform_topics: str, juhe_infra: Any
) -> None:
    """docs/architecture.md §4, "Test and live never mix": a test payment and its refund go to the test book's twins of
    the chart accounts, an event without `livemode` (published before modes existed) is live; a test key reads only the
    test book; a transfer mixing the books is refused; verify holds per book."""
    ledger = await ledger_factory()
    live = succeeded("pay_b1", "mch_b1")  # no `livemode`: an old event, live money
    test = succeeded("pay_b2", "mch_b1", livemode=False, amount_minor=3000, fee_minor=0, platform_fee_minor=0)
    await publish(juhe_infra.bootstrap, platform_topics, "cashier.payments", live, test)
    refund = {
        "refund_id": "re_b2",
        "payment_id": "pay_b2",
        "merchant_id": "mch_b1",
        "amount_minor": 1000,
        "currency": "CNY",
        "channel": "wechatpay",
        "payment_amount_minor": 3000,
        "payment_refunded_minor": 1000,
        "livemode": False,
    }
    await publish(
        juhe_infra.bootstrap,
        platform_topics,
        "cashier.refunds",
        Envelope(type="refund.succeeded", source="cashier", subject="re_b2", data=refund),
    )

    async def posted() -> bool:
        return await ledger.count("transfers") == 3

    await eventually(posted, "the three events to be posted")
    live_book = await accounts_of(ledger, "mch_b1", livemode="true")
    test_book = await accounts_of(ledger, "mch_b1", livemode="false")
    assert live_book["merchant_pending:"]["balances"]["posted_balance_minor"] == 9940
    assert test_book["merchant_pending:"]["balances"]["posted_balance_minor"] == 2000
    assert live_book["merchant_pending:"]["livemode"] is True and test_book["merchant_pending:"]["livemode"] is False
    platform_test = await accounts_of(ledger, "platform", livemode="false")
    assert platform_test["channel_clearing:wechatpay"]["balances"]["posted_balance_minor"] == 2000

    # A test key acting for the merchant sees the test book only: the live account is 404, asking for live money 422.
    token = mint_identity_token(
        DEMO_INTERNAL_TOKEN_SECRET, key_id="key_test_1", platform="juhe", merchant_id="mch_b1", mode="test"
    )
    as_test = {IDENTITY_HEADER: token}
    listed = await ledger.client.get("/v1/accounts", params={"holder_id": "mch_b1"}, headers=as_test)
    assert [a["id"] for a in listed.json()["data"]] == [test_book["merchant_pending:"]["id"]]
    live_id = live_book["merchant_pending:"]["id"]
    for path in (f"/v1/accounts/{live_id}", f"/v1/accounts/{live_id}/balance", f"/v1/accounts/{live_id}/statement"):
        hidden = await ledger.client.get(path, headers=as_test)
        assert hidden.status_code == 404 and hidden.json()["code"] == "account_not_found", path
    other = await ledger.client.get("/v1/accounts", params={"holder_id": "mch_b1", "livemode": "true"}, headers=as_test)
    assert other.status_code == 422
    opened = await ledger.client.post(
        "/v1/accounts", headers=as_test, json={"holder_id": "mch_b1", "currency": "CNY", "kind": "x", "code": "2202"}
    )
    assert opened.status_code == 201 and opened.json()["livemode"] is False

    # Test money can never move live money: the engine refuses the transfer, nothing changes.
    mixed = await ledger.client.post("/v1/transfers", json=body(test_book["merchant_pending:"]["id"], live_id, 500))
    assert mixed.status_code == 422 and mixed.json()["code"] == "books_mixed", mixed.text
    assert await ledger.count("transfers") == 3
    await ledger.assert_verified()
