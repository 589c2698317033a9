"""The wallet and a top-up promotion's bonus through the cashier, with a real ledger (docs/marketing.md "Top-up
refunds", "Top-up promotions"):

- a top-up refunded at the Alipay sandbox: the ledger holds the refund on the holder's cash balance before the
  channel is asked, so a refund never takes money the holder spent (409 `refund_exceeds_balance`, nothing
  changed, also when two refunds race for the last of it), and posts the hold when the refund succeeds;
- a wallet payment spends the cash first, then the bonus, in one hold; its refunds give back to the bonus first,
  never more than the payment took from it, also when two refunds race."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import select

from libs.common.embedded import free_port
from libs.common.events import Envelope
from libs.common.outbox_tables import outbox
from libs.common.testing.infra import serve_app
from services.cashier.tests.integration.flows.conftest import Sandboxes, approve, qr_payment, wait_for
from services.cashier.tests.integration.flows.test_purpose_and_split import _post_as, _problem
from services.cashier.tests.integration.flows.test_wallet_and_ledger import (
    RunningLedger,
    _wallet_cashier,
    wallet_payment,
)
from services.cashier.tests.integration.flows.test_wallet_and_ledger import (
    ledger as wallet_ledger,  # noqa: F401 (a fixture: the ledger with a cashier's wallet channel)
)
from services.ledger.app import create_app as create_ledger_app
from services.ledger.tests.integration.test_cashier_consumer import publish
from services.ledger.tests.integration.test_wallet_topup import top_up_paid
from services.ledger.tests.integration.wallet_harness import PERSON_IDS, resident_id
from services.ledger.verify import verify

HOLDER = "usr_topup_refund_1"


async def test_top_up_refund_takes_only_unspent_cash_and_the_ledger_posts_its_hold(
    start_cashier: Any, sandboxes: Sandboxes, migrated_database: Any, service_settings: Any, clean_faults: None
) -> None:
    async with _cashier_with_its_ledger(start_cashier, migrated_database, service_settings) as (
        cashier,
        ledger,
        ledger_db,
    ):
        await cashier.configure("alipay", sandboxes.alipay_config(), priority=1)
        await _open_holder(ledger, HOLDER, "王五")
        body = qr_payment(
            amount_minor=10_000, purpose="wallet_topup", wallet_holder_id=HOLDER, preferred_channels=["alipay"]
        )
        created = await _post_as(cashier, body, service="ledger", merchant_id=cashier.merchant_id)
        assert created.status_code == 201, created.text
        await approve(sandboxes, "alipay", created.json()["attempts"][0]["out_trade_no"])
        payment = await cashier.wait_status(created.json()["id"], "succeeded")
        credited = await wait_for(lambda: _operation(ledger, "top_up", payment["id"]), "the top-up credited")
        assert credited["status"] == "posted"
        spend = {"payment_id": "pay_tr_spend", "merchant_id": "mch_shop", "amount_minor": 3_000}
        assert (await ledger.post(f"/v1/wallet/holders/{HOLDER}/payments", json=spend)).status_code == 201

        refunds = f"/v1/payments/{payment['id']}/refunds"
        over = _problem(await cashier.post(refunds, {"amount_minor": 8_000}), 409, "refund_exceeds_balance")
        assert over["available_minor"] == 7_000
        assert (await cashier.get(refunds)).json()["data"] == []  # nothing changed
        assert (await cashier.payment(payment["id"]))["refunded_minor"] == 0

        first = await cashier.post(refunds, {"amount_minor": 4_000})
        assert first.status_code == 201, first.text
        refund_id = first.json()["id"]
        # Two refunds race for the 3000 left of the cash: the ledger holds one, the other changes nothing.
        raced = await asyncio.gather(*(cashier.post(refunds, {"amount_minor": 3_000}) for _ in range(2)))
        assert sorted(r.status_code for r in raced) == [201, 409], [r.text for r in raced]
        _problem(next(r for r in raced if r.status_code == 409), 409, "refund_exceeds_balance")

        await wait_for(lambda: _posted(ledger, refund_id), "the first refund's hold posted by the ledger")
        for won in (r for r in raced if r.status_code == 201):
            await wait_for(functools.partial(_posted, ledger, won.json()["id"]), "the second refund's hold posted")
        wallet = (await ledger.get(f"/v1/wallet/holders/{HOLDER}/my-wallet")).json()
        cash = next(v for v in wallet["subaccounts"] if v["subaccount_type"] == "balance")
        assert cash["balances"]["posted_balance_minor"] == 0
        listed = (await cashier.get(refunds)).json()["data"]
        assert sorted(r["amount_minor"] for r in listed) == [3_000, 4_000]
        assert (await cashier.payment(payment["id"]))["refunded_minor"] == 7_000
    assert await verify(ledger_db) == {}


@contextlib.asynccontextmanager
async def _cashier_with_its_ledger(
    start_cashier: Any, migrated_database: Any, service_settings: Any, *, cashier_url: bool = False, **settings: Any
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, str]]:
    """A cashier and a ledger wired together: the ledger's port is chosen first (the cashier needs its URL), its
    top-up collecting merchant is the cashier's merchant and, with `cashier_url`, it calls that cashier back.
    Yields (the cashier, a client of the ledger, the ledger's database URL)."""
    ledger_port = free_port()
    cashier = await start_cashier(ledger_url=f"http://127.0.0.1:{ledger_port}")
    ledger_db = await migrated_database("ledger")
    if cashier_url:
        settings["cashier_url"] = cashier.base_url
    ledger_settings = service_settings(
        "ledger", database_url=ledger_db, port=ledger_port, wallet_topup_merchant_id=cashier.merchant_id, **settings
    )
    async with (
        serve_app(create_ledger_app(ledger_settings), port=ledger_port, name="the ledger") as ledger_url,
        httpx.AsyncClient(base_url=ledger_url, timeout=30) as ledger,
    ):
        yield cashier, ledger, ledger_db


async def _open_holder(ledger: httpx.AsyncClient, holder_id: str, name: str) -> None:
    """A person wallet holder at the ledger (its cash balance opened with it)."""
    holder = {
        "holder_id": holder_id,
        "holder_type": "person",
        "name": name,
        "resident_id": resident_id(next(PERSON_IDS)),
        "phone": "13900139001",
    }
    created = await ledger.post("/v1/wallet/holders", json=holder)
    assert created.status_code == 201, created.text


async def _operation(ledger: httpx.AsyncClient, kind: str, key: str) -> dict[str, Any] | None:
    r = await ledger.get("/v1/wallet/operations", params={"kind": kind, "idempotency_key": key})
    return dict(r.json()) if r.status_code == 200 else None


async def _posted(ledger: httpx.AsyncClient, refund_id: str) -> bool:
    found = await _operation(ledger, "top_up_refund", refund_id)
    return found is not None and found["status"] == "posted"


async def _fund_bonus(ledger: RunningLedger, user_id: str, amount_minor: int) -> None:
    """The user's 2308 bonus sub-account holding `amount_minor` (as a top-up promotion's grant leaves it)."""
    bonus = await ledger.client.post(
        "/v1/accounts",
        json={
            "holder_id": user_id,
            "currency": "CNY",
            "kind": "user_bonus",
            "code": "2308",
            "flags": {"debits_must_not_exceed_credits": True},
        },
    )
    assert bonus.status_code == 201, bonus.text
    expense = await ledger.client.post(
        "/v1/accounts",
        json={
            "holder_id": "platform",
            "currency": "CNY",
            "kind": "marketing_expense",
            "code": "5201",
            "idempotency_key": "chart:marketing_expense:platform:CNY",
        },
    )
    assert expense.status_code in (200, 201), expense.text
    granted = await ledger.client.post(
        "/v1/transfers",
        json={
            "source": "test",
            "idempotency_key": f"bonus-{user_id}",
            "postings": [
                {
                    "account_id": expense.json()["id"],
                    "direction": "debit",
                    "amount_minor": amount_minor,
                    "currency": "CNY",
                },
                {
                    "account_id": bonus.json()["id"],
                    "direction": "credit",
                    "amount_minor": amount_minor,
                    "currency": "CNY",
                },
            ],
        },
    )
    assert granted.status_code == 201, granted.text


async def _confirmed_wallet_payment(cashier: Any, user: str, amount_minor: int) -> dict[str, Any]:
    """A wallet payment created and confirmed by its payer: succeeded (the hold posted)."""
    created = await cashier.post("/v1/payments", wallet_payment(user, amount_minor))
    assert created.status_code == 201, created.text
    confirmed = await cashier.client.post(
        f"/v1/payments/{created.json()['id']}/confirm", json={"user_id": user}, headers=cashier.headers()
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    return dict(confirmed.json())


async def test_wallet_payment_spends_cash_then_bonus_and_refunds_give_the_bonus_back_first(
    start_cashier: Any,
    wallet_ledger: RunningLedger,  # noqa: F811 (the fixture imported above)
) -> None:
    ledger = wallet_ledger
    cashier, user = await _wallet_cashier(start_cashier, ledger, 10_000)
    await _fund_bonus(ledger, user, 1_000)

    async def wallet() -> tuple[int, int]:
        balances = await ledger.posted(user)
        return balances["user_wallet"], balances["user_bonus"]

    payment = await _confirmed_wallet_payment(cashier, user, 10_300)
    assert payment["amount_minor"] == 10_300
    hold = await ledger.transfer(f"{payment['id']}:hold")
    assert hold is not None and hold["metadata"]["bonus_minor"] == 300  # the cash first, the bonus for the rest
    assert await wallet() == (0, 700)
    fee = (await ledger.posted("platform"))["platform_fee_income"]
    assert await ledger.posted(cashier.merchant_id) == {"merchant_pending": 10_300 - fee}  # paid in full

    # Two refunds race: the bonus first, 300 in all (what the payment took from it), the rest to the cash.
    refunds = f"/v1/payments/{payment['id']}/refunds"
    raced = await asyncio.gather(*(cashier.post(refunds, {"amount_minor": 200}) for _ in range(2)))
    assert all(r.status_code == 201 and r.json()["status"] == "succeeded" for r in raced), [r.text for r in raced]
    assert await wallet() == (100, 1_000)
    last = await cashier.post(refunds, {"amount_minor": 500})
    assert last.status_code == 201 and last.json()["status"] == "succeeded", last.text
    assert await wallet() == (600, 1_000)

    # Cash and bonus together short: refused whole, nothing held.
    short = await cashier.post("/v1/payments", wallet_payment(user, 2_000))
    _problem(short, 402, "insufficient_funds")
    balances = await ledger.balances(user)
    assert balances["user_wallet"]["debits_pending"] == 0 and balances["user_bonus"]["debits_pending"] == 0


async def test_wallet_bonus_lots_and_splits_and_a_lost_top_up_refund_hold(
    start_cashier: Any, migrated_database: Any, service_settings: Any, platform_topics: str, juhe_infra: Any
) -> None:
    """One cashier and one ledger wired together (docs/marketing.md "Top-up promotions", "Top-up refunds").

    Bonus lots (docs/ledger.md §3.11): the payment spends the earliest-expiring bonus first; revoking that bonus
    afterwards takes back only what is left of it (nothing) and the other bonus stays whole; the payment's refunds
    give the revoked bonus's part back to the platform (5201), never to the payer, and the live bonus's part back
    to its lot, in either order of a refund and the ending, repeats included; a bonus ending while a hold is
    pending on it gets back what the voided hold returns (the worker's wallet round). The payment and its refunds
    say what was cash and what was bonus (`wallet_split`).

    A lost top-up refund: the cashier asks the ledger to hold a top-up refund inside the transaction that records
    the refund; if it dies before that commit, no refund event will ever finish the hold. The ledger's wallet
    round asks the cashier about holds older than `top_up_refund_orphan_after_seconds`: one whose refund it never
    recorded (404) is voided, so the holder's cash is spendable again; one it knows stays held for its events."""
    user, payer = f"usr_{uuid.uuid4().hex[:10]}", f"usr_{uuid.uuid4().hex[:10]}"
    top_up = f"pay_orphan_{uuid.uuid4().hex[:8]}"
    async with _cashier_with_its_ledger(
        start_cashier,
        migrated_database,
        service_settings,
        cashier_url=True,
        top_up_refund_orphan_after_seconds=0.5,
        wallet_reconcile_interval_seconds=0.3,
    ) as (cashier, ledger, ledger_db):
        await cashier.configure("wallet", {}, priority=1)
        await _open_holder(ledger, user, "赵六")
        grants = [("pay_lot_g1", 1_000, "2027-01-01T00:00:00+00:00"), ("pay_lot_g2", 1_000, None)]
        for pay_id, amount, expires in grants:
            await publish(
                juhe_infra.bootstrap,
                platform_topics,
                "marketing.topups",
                _bonus_event("granted", user, pay_id, amount, expires_at=expires),
            )

        async def state() -> tuple[int, dict[str, int], int]:
            """(the bonus pool, its open lots by grant, the platform's marketing expense)."""
            accounts = (await ledger.get("/v1/accounts", params={"holder_id": user, "limit": 200})).json()["data"]
            pool = next((a["balances"]["posted_balance_minor"] for a in accounts if a["kind"] == "user_bonus"), 0)
            lots = {
                a["metadata"]["payment_id"]: a["balances"]["posted_balance_minor"]
                for a in accounts
                if a["kind"] == "wallet_bonus_lot" and a["status"] != "closed"
            }
            return pool, lots, (await _posted_by_kind(ledger, "platform")).get("marketing_expense", 0)

        await wait_for(lambda: _when(state(), lambda s: s[0] == 2_000), "both bonuses granted")
        payment = await _confirmed_wallet_payment(cashier, user, 1_500)
        assert await state() == (500, {"pay_lot_g1": 0, "pay_lot_g2": 500}, 2_000)  # the expiring bonus first
        # The payment says what was cash and what was bonus (view and event).
        assert payment["wallet_split"] == {"cash_minor": 0, "bonus_minor": 1_500}
        assert (await _event(cashier, "payment.succeeded", payment["id"]))["wallet_split"] == payment["wallet_split"]

        # g1's top-up is refunded: its bonus is revoked (twice). Nothing is left of its lot; g2 stays whole.
        revoked = _bonus_event("revoked", user, "pay_lot_g1", 1_000, refund_id="re_lot_g1")
        await publish(juhe_infra.bootstrap, platform_topics, "marketing.topups", revoked, revoked)
        await wait_for(lambda: _when(state(), lambda s: "pay_lot_g1" not in s[1]), "g1's lot ended and closed")
        assert await state() == (500, {"pay_lot_g2": 500}, 2_000)

        # A refund of the payment: the last part spent (g2's 500) back to its lot first, then g1's part, which
        # ended, back to the platform; the payer's cash gets nothing (the payment was all bonus).
        refunds = f"/v1/payments/{payment['id']}/refunds"
        first = await cashier.post(refunds, {"amount_minor": 800})
        assert first.status_code == 201 and first.json()["status"] == "succeeded", first.text
        assert await state() == (1_000, {"pay_lot_g2": 1_000}, 1_700)
        split = {"cash_minor": 0, "bonus_minor": 500, "platform_minor": 300}  # where this refund went back
        assert first.json()["wallet_split"] == split
        event = await _event(cashier, "refund.succeeded", first.json()["id"])
        assert (event["wallet_split"], event["payment_wallet_split"]) == (split, payment["wallet_split"])

        # g2 expires while another payment's hold is pending on 300 of it: the 700 not held return at once; the
        # lot cannot close yet. The payment is closed (the hold voided, 300 back in the ended lot): the worker's
        # wallet round takes those back too and closes the lot.
        pending = await cashier.post("/v1/payments", wallet_payment(user, 300))
        assert pending.status_code == 201, pending.text
        await publish(
            juhe_infra.bootstrap,
            platform_topics,
            "marketing.topups",
            _bonus_event("expired", user, "pay_lot_g2", 1_000, expires_at=None),
        )
        await wait_for(lambda: _when(state(), lambda s: s == (300, {"pay_lot_g2": 300}, 1_000)), "g2's free 700 back")
        closed = await cashier.post(f"/v1/payments/{pending.json()['id']}/close", {})
        assert closed.status_code == 200, closed.text
        await wait_for(lambda: _when(state(), lambda s: s == (0, {}, 700)), "the voided 300 back to the platform")

        # The rest of the payment is refunded after both bonuses ended: all of it to the platform, none to the payer.
        last = await cashier.post(refunds, {"amount_minor": 700})
        assert last.status_code == 201 and last.json()["status"] == "succeeded", last.text
        assert await state() == (0, {}, 0)  # the platform paid for no bonus: none was kept, none spent for good
        assert (await _posted_by_kind(ledger, user))["user_wallet"] == 0

        # A lost top-up refund and a known one, for another holder whose top-up credited the cash.
        await _open_holder(ledger, payer, "孙七")
        await publish(
            juhe_infra.bootstrap, platform_topics, "cashier.payments", top_up_paid(top_up, cashier.merchant_id, payer)
        )  # 10000 credited to the cash
        await wait_for(lambda: _operation(ledger, "top_up", top_up), "the top-up credited")
        # A refund the cashier knows (a wallet payment's), and one it lost: both held as the cashier holds them.
        paid = await _confirmed_wallet_payment(cashier, payer, 1_000)
        known = await cashier.post(f"/v1/payments/{paid['id']}/refunds", {"amount_minor": 500})
        assert known.status_code == 201, known.text
        lost = f"re_lost_{uuid.uuid4().hex[:8]}"
        for refund_id, amount in ((known.json()["id"], 2_000), (lost, 3_000)):
            body = {"refund_id": refund_id, "payment_id": top_up, "amount_minor": amount, "currency": "CNY"}
            held = await ledger.post("/v1/wallet/top-up-refunds", json=body)
            assert held.status_code == 201, held.text

        async def finished(refund_id: str, check: Any) -> bool:
            found = await _operation(ledger, "top_up_refund", refund_id)
            return found is not None and bool(check(found))

        await wait_for(lambda: finished(lost, lambda o: o["status"] == "voided"), "the lost refund's hold voided")
        await wait_for(
            lambda: finished(known.json()["id"], lambda o: o["details"].get("cashier_known")),
            "the known refund's hold confirmed with the cashier",
        )
        assert (await _operation(ledger, "top_up_refund", known.json()["id"]) or {})["status"] == "pending"
        wallet = (await ledger.get(f"/v1/wallet/holders/{payer}/my-wallet")).json()
        cash = next(v for v in wallet["subaccounts"] if v["subaccount_type"] == "balance")
        assert cash["balances"]["available_balance_minor"] == 10_000 - 1_000 + 500 - 2_000  # the 3000 is free again
    assert await verify(ledger_db) == {}


async def _posted_by_kind(ledger: httpx.AsyncClient, holder_id: str) -> dict[str, int]:
    """A holder's posted balances by account kind (the last account of a kind wins)."""
    r = await ledger.get("/v1/accounts", params={"holder_id": holder_id, "limit": 200})
    return {a["kind"]: a["balances"]["posted_balance_minor"] for a in r.json()["data"]}


async def _event(cashier: Any, event_type: str, subject: str) -> dict[str, Any]:
    """The data of the cashier's one `event_type` event about `subject`, read from its outbox."""
    query = select(outbox.c.payload).where(outbox.c.event_type == event_type, outbox.c.key == subject)
    async with cashier.engine.connect() as conn:
        [payload] = (await conn.execute(query)).scalars().all()
    return dict(Envelope.from_bytes(payload).data)


def _bonus_event(kind: str, user: str, payment_id: str, bonus_minor: int, **extra: Any) -> Envelope:
    data = {
        "payment_id": payment_id,
        "holder_id": user,
        "promotion_id": "tpp_lots",
        "bonus_minor": bonus_minor,
        "currency": "CNY",
        "topup_minor": 10_000,
        **extra,
    }
    return Envelope(type=f"topup.bonus_{kind}", source="marketing", subject=payment_id, data=data)


async def _when(value: Any, check: Any) -> bool:
    return bool(check(await value))
