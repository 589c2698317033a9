"""The wallet withdrawal contract (docs/contracts.md §3): `ledger.wallet` events through the outbox, exactly once,
with the operation's own commit; the operation card settlement reads (`details.bank_card`), full for a service
and masked for the user."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from libs.common.internal_auth import IDENTITY_HEADER, mint_identity_token
from libs.common.testing.plugin import DatabaseFactory
from sandboxes.common.testing import SandboxProcess
from services.ledger.tests.integration.wallet_harness import CARD, PERSON_IDS, Wallet, problem


async def funded_person(wallet: Wallet, amount_minor: int = 50_000) -> str:
    holder_id = await wallet.verified_person()
    assert (await wallet.top_up(holder_id, amount_minor)).status_code == 201
    await wallet.fund_escrow(amount_minor)
    return holder_id


async def withdraw(wallet: Wallet, holder_id: str, amount_minor: int = 1_000, **extra: Any) -> httpx.Response:
    body = {"withdrawal_id": f"wd_{holder_id}_{next(PERSON_IDS)}", "amount_minor": amount_minor, "fee_minor": 10}
    return await wallet.client.post(f"/v1/wallet/holders/{holder_id}/withdrawals", json={**body, **extra})


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_withdrawal_requested_once_with_the_contract_data(wallet: Wallet) -> None:
    holder_id = await funded_person(wallet)
    r = await withdraw(wallet, holder_id, withdrawal_id="wd_contract_1")
    assert r.status_code == 201, r.text
    op = r.json()
    again = await withdraw(wallet, holder_id, withdrawal_id="wd_contract_1")
    assert again.status_code == 200 and again.json()["replayed"] is True
    [event] = await wallet.wallet_events(op["id"])
    assert event["type"] == "withdrawal.requested" and event["subject"] == op["id"] and event["source"] == "ledger"
    data = event["data"]
    assert {
        k: data[k] for k in ("operation_id", "holder_id", "amount_minor", "fee_minor", "currency", "idempotency_key")
    } == {
        "operation_id": op["id"],
        "holder_id": holder_id,
        "amount_minor": 1_000,
        "fee_minor": 10,
        "currency": "CNY",
        "idempotency_key": "wd_contract_1",
    }
    assert CARD not in str(event), "no card number on the bus"
    # What settlement reads for the payout: the verified card and its holder's name.
    card = (await wallet.client.get(f"/v1/wallet/operations/{op['id']}")).json()["details"]["bank_card"]
    assert card == {"number": CARD, "holder_name": "张三"}


async def test_post_and_void_publish_once_even_when_repeated_concurrently(wallet: Wallet) -> None:
    holder_id = await funded_person(wallet)
    paid = (await withdraw(wallet, holder_id)).json()["id"]
    failed = (await withdraw(wallet, holder_id)).json()["id"]
    posts = await asyncio.gather(*(wallet.client.post(f"/v1/wallet/operations/{paid}/post") for _ in range(10)))
    assert {r.status_code for r in posts} == {200} and {r.json()["status"] for r in posts} == {"posted"}
    voids = await asyncio.gather(*(wallet.client.post(f"/v1/wallet/operations/{failed}/void") for _ in range(10)))
    assert {r.status_code for r in voids} == {200} and {r.json()["status"] for r in voids} == {"voided"}
    assert types(await wallet.wallet_events(paid)) == ["withdrawal.requested", "withdrawal.posted"]
    assert types(await wallet.wallet_events(failed)) == ["withdrawal.requested", "withdrawal.voided"]
    posted = (await wallet.wallet_events(paid))[1]["data"]
    assert (posted["operation_id"], posted["status"], posted["amount_minor"]) == (paid, "posted", 1_000)
    # the wrong outcome after the fact is refused and publishes nothing
    problem(await wallet.client.post(f"/v1/wallet/operations/{failed}/post"), 409, "pending_transfer_already_voided")
    assert len(await wallet.wallet_events(failed)) == 2


async def test_a_hold_finished_behind_the_operations_back_is_reconciled_once(wallet: Wallet) -> None:
    """The writer committed the post but the operation's own commit never happened (a crash there):
    the worker's reconciler records the status and publishes `withdrawal.posted`, exactly once."""
    holder_id = await funded_person(wallet)
    op = (await withdraw(wallet, holder_id)).json()
    r = await wallet.client.post(f"/v1/transfers/{op['transfer_id']}/post")  # the ledger core, not the wallet
    assert r.status_code == 200, r.text
    events = await wait_events(wallet, op["id"], 2)
    assert types(events) == ["withdrawal.requested", "withdrawal.posted"]
    # settlement's retry of the post afterwards: 200, nothing published again
    r = await wallet.client.post(f"/v1/wallet/operations/{op['id']}/post")
    assert r.status_code == 200 and r.json()["status"] == "posted", r.text
    await asyncio.sleep(0.5)  # two reconciler rounds (0.2 s each): nothing more may appear
    assert len(await wallet.wallet_events(op["id"])) == 2


async def test_an_expired_withdrawal_hold_is_announced_as_voided(
    identity: SandboxProcess,
    migrated_database: DatabaseFactory,
    service_settings: Callable[..., Any],
) -> None:
    from services.ledger.tests.integration.wallet_harness import running_wallet

    async for wallet in running_wallet(identity, migrated_database, service_settings, wallet_withdrawal_hold_seconds=1):
        holder_id = await funded_person(wallet)
        op = (await withdraw(wallet, holder_id)).json()
        events = await wait_events(wallet, op["id"], 2)
        assert types(events) == ["withdrawal.requested", "withdrawal.voided"]
        assert events[1]["data"]["status"] == "expired"
        r = await wallet.client.post(f"/v1/wallet/operations/{op['id']}/void")  # settlement's late void: fine
        assert r.status_code == 200 and r.json()["status"] == "expired", r.text
        problem(await wallet.client.post(f"/v1/wallet/operations/{op['id']}/post"), 409, "pending_transfer_expired")
        assert len(await wallet.wallet_events(op["id"])) == 2
        balance = (await wallet.sub(holder_id, "balance"))["balances"]
        assert balance["pending_out_minor"] == 0 and balance["available_balance_minor"] == 50_000


async def test_top_up_credited_once_per_payment(wallet: Wallet) -> None:
    holder_id = await wallet.verified_person()
    body = {"payment_id": "pay_evt_1", "amount_minor": 8_800, "channel": "wechatpay", "channel_fee_minor": 5}
    first = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/top-ups", json=body)
    again = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/top-ups", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    [event] = await wallet.wallet_events(first.json()["id"])
    assert event["type"] == "top_up.credited"
    data = event["data"]
    assert (data["payment_id"], data["holder_id"], data["amount_minor"], data["currency"]) == (
        "pay_evt_1",
        holder_id,
        8_800,
        "CNY",
    )
    # a payment from the wallet publishes nothing on ledger.wallet (nobody acts on it)
    r = await wallet.client.post(
        f"/v1/wallet/holders/{holder_id}/payments",
        json={"payment_id": "pay_evt_2", "merchant_id": "mch_evt", "amount_minor": 100, "platform_fee_minor": 1},
    )
    assert r.status_code == 201, r.text
    assert await wallet.wallet_events(r.json()["id"]) == []


async def test_the_full_card_for_services_and_the_platform_masked_for_the_user(
    wallet: Wallet,
    service_settings: Callable[..., Any],
) -> None:
    holder_id = await funded_person(wallet)
    op = (await withdraw(wallet, holder_id)).json()
    secret = service_settings("ledger").internal_token_secret.get_secret_value()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"user": holder_id}, "6222***********2444"),
        ({"service": "settlement"}, CARD),
        ({"platform": "plt_demo"}, CARD),
    ]
    for identity, number in cases:
        token = mint_identity_token(secret, key_id="test", **identity)
        r = await wallet.client.get(f"/v1/wallet/operations/{op['id']}", headers={IDENTITY_HEADER: token})
        assert r.status_code == 200, r.text
        assert r.json()["details"]["bank_card"]["number"] == number, identity


async def wait_events(wallet: Wallet, subject: str, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        events = await wallet.wallet_events(subject)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"{subject}: fewer than {count} wallet events: {await wallet.wallet_events(subject)}")


async def test_a_withdrawal_hold_whose_operation_was_never_recorded_is_adopted_once(
    identity: SandboxProcess,
    migrated_database: DatabaseFactory,
    service_settings: Callable[..., Any],
) -> None:
    """The writer committed the hold, then the request died before the operation's commit (simulated by
    removing the operation and its event): the reconciler records it and publishes `withdrawal.requested`
    once, and the user's retry with the same key replays exactly that operation."""
    from services.ledger.tests.integration.wallet_harness import running_wallet

    async for wallet in running_wallet(identity, migrated_database, service_settings, wallet_orphan_after_seconds=0.3):
        holder_id = await funded_person(wallet)
        body = {"withdrawal_id": "wd_orphan", "amount_minor": 2_000, "fee_minor": 10}
        lost = (await wallet.client.post(f"/v1/wallet/holders/{holder_id}/withdrawals", json=body)).json()
        await wallet.execute("DELETE FROM outbox WHERE key = :k", k=lost["id"])
        await wallet.execute("DELETE FROM wallet_operations WHERE id = :k", k=lost["id"])

        adopted = "SELECT * FROM wallet_operations WHERE idempotency_key = 'wd_orphan'"
        for _ in range(200):
            if rows := await wallet.sql(adopted):
                break
            await asyncio.sleep(0.05)
        [row] = rows
        assert (row["transfer_id"], row["status"], row["amount_minor"]) == (lost["transfer_id"], "pending", 2_000)
        [event] = await wait_events(wallet, row["id"], 1)
        assert event["type"] == "withdrawal.requested" and event["data"]["fee_minor"] == 10
        again = await wallet.client.post(f"/v1/wallet/holders/{holder_id}/withdrawals", json=body)
        assert again.status_code == 200 and again.json()["id"] == row["id"], again.text
        assert again.json()["details"]["bank_card"] == {"number": CARD, "holder_name": "张三"}
        await asyncio.sleep(0.7)  # more reconciler rounds: nothing more
        assert len(await wallet.wallet_events(row["id"])) == 1
        assert len(await wallet.sql(adopted)) == 1
