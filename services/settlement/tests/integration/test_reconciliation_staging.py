"""The set-based SQL reconciliation gives exactly what the in-memory `Matcher` (the specification) gives.

Generated days on real PostgreSQL, with every case that makes matching order-dependent: a line billed
twice, a line that finds its record only by channel trade number, a channel number pointing at a record
another line has by key, refunds still in flight, failed payments billed as paid, fees unknown to Juhe.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import insert, text

from libs.common.errors import Problem
from services.settlement.domain.errors import BILL_UNAVAILABLE
from services.settlement.domain.reconciliation import Line, Matcher, Outcome, Record, Result, channel_says_succeeded
from services.settlement.store import reconciliation as store
from services.settlement.store import reconciliation_staging as staging
from services.settlement.store.tables import payment_records, refund_records, settlement_entries
from services.settlement.tests.integration.conftest import Harness

BILL_DATE = date(2026, 11, 24)
CHANNEL = "wechatpay"


def generate_day(
    seed: int, merchant_id: str, n: int = 300
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Line]]:
    """Payment rows, refund rows and a bill that disagree in every way the matcher knows."""
    rnd = random.Random(seed)
    payments: list[dict[str, Any]] = []
    refunds: list[dict[str, Any]] = []
    lines: list[Line] = []
    for i in range(n):
        pid = f"pay_{seed}_{i:05d}"
        otn = None if rnd.random() < 0.05 else f"otn{seed}x{i:05d}"
        ch = None if rnd.random() < 0.05 else f"42{seed}{i:08d}"
        amount = rnd.randint(1, 100_000)
        fee = None if rnd.random() < 0.1 else amount * 6 // 1000
        status = rnd.choices(["succeeded", "failed", "closed", "processing"], [85, 8, 4, 3])[0]
        payments.append(
            {
                "payment_id": pid,
                "merchant_id": merchant_id,
                "merchant_order_no": f"o{i}",
                "channel": CHANNEL,
                "out_trade_no": otn,
                "channel_trade_no": ch,
                "status": status,
                "amount_minor": amount,
                "currency": "CNY",
                "channel_fee_minor": fee,
                "bill_date": BILL_DATE,
            }
        )
        key = otn or pid
        roll = rnd.random()
        if roll < 0.06:
            continue  # missing at the channel
        line_key = key
        if roll < 0.12 and ch:
            line_key = f"other{seed}x{i}"  # the channel knows it only by its own number
        line_amount = amount + (rnd.choice((-1, 1)) if rnd.random() < 0.04 else 0)
        line_fee = amount * 6 // 1000 if fee is None else fee
        line_fee += rnd.choice((-1, 1)) if rnd.random() < 0.04 else 0
        line = Line("payment", line_key, ch or "", line_amount, line_fee, "SUCCESS")
        lines.append(line)
        if rnd.random() < 0.04:
            lines.append(line)  # billed twice
        if ch and rnd.random() < 0.03:
            lines.append(Line("payment", f"ghost{seed}x{i}", ch, amount, line_fee, "SUCCESS"))  # same channel number
        if status == "succeeded" and rnd.random() < 0.15:
            rid = f"re_{seed}_{i:05d}"
            refund_amount = rnd.randint(1, amount)
            refund_status = rnd.choice(["succeeded", "succeeded", "pending", "failed"])
            refunds.append(
                {
                    "refund_id": rid,
                    "payment_id": pid,
                    "merchant_id": merchant_id,
                    "channel": CHANNEL,
                    "channel_refund_no": f"50{seed}{i:08d}",
                    "status": refund_status,
                    "amount_minor": refund_amount,
                    "currency": "CNY",
                    "bill_date": BILL_DATE,
                }
            )
            if rnd.random() < 0.9:
                word = rnd.choice(["SUCCESS", "PROCESSING", "退款中", "REFUND"])
                lines.append(Line("refund", rid, ch or "", refund_amount, -(refund_amount * 6 // 1000), word))
    for j in range(max(1, n // 50)):
        lines.append(Line("payment", f"unknown{seed}x{j}", f"99{seed}{j:06d}", 500, 3, "SUCCESS"))  # missing in Juhe
        lines.append(Line("refund", f"re_unknown{seed}x{j}", "", 100, 0, "SUCCESS"))
    rnd.shuffle(lines)
    return payments, refunds, lines


def records_of(payments: list[dict[str, Any]], refunds: list[dict[str, Any]]) -> list[Record]:
    """Juhe's records as the service used to build them for `Matcher`."""
    by_id = {p["payment_id"]: p for p in payments}
    out = [
        Record(
            "payment",
            p["out_trade_no"] or p["payment_id"],
            p["channel_trade_no"],
            p["payment_id"],
            None,
            p["merchant_order_no"],
            p["amount_minor"],
            p["channel_fee_minor"],
            p["status"],
        )
        for p in payments
    ]
    out += [
        Record(
            "refund",
            r["refund_id"],
            r["channel_refund_no"],
            r["payment_id"],
            r["refund_id"],
            by_id[r["payment_id"]]["merchant_order_no"],
            r["amount_minor"],
            None,
            r["status"],
        )
        for r in refunds
    ]
    return out


def item_of(result: Result) -> tuple[Any, ...]:
    """The stored item of a matcher result, as the service used to store it."""
    record, line = result.record, result.line
    return (
        result.outcome.value,
        result.resolution.value,
        result.kind,
        result.key,
        record.payment_id if record else None,
        record.refund_id if record else None,
        record.merchant_order_no if record else None,
        line.channel_trade_no if line else (record.channel_trade_no if record else None),
        record.amount_minor if record else None,
        line.amount_minor if line else None,
        record.fee_minor if record else None,
        line.fee_minor if line else None,
        record.status if record else None,
        line.status if line else None,
        result.detail,
    )


ITEM_FIELDS = (
    "outcome",
    "resolution",
    "kind",
    "key",
    "payment_id",
    "refund_id",
    "merchant_order_no",
    "channel_trade_no",
    "juhe_amount_minor",
    "channel_amount_minor",
    "juhe_fee_minor",
    "channel_fee_minor",
    "juhe_status",
    "channel_status",
    "detail",
)


async def rows_of(lines: list[Line]) -> AsyncIterator[tuple[Any, ...]]:
    for seq, line in enumerate(lines, start=1):
        yield (
            seq,
            line.kind,
            line.key,
            line.channel_trade_no,
            line.amount_minor,
            line.fee_minor,
            line.status,
            channel_says_succeeded(line),
        )


async def run_sql(
    harness: Harness, merchant_id: str, lines: list[Line], run_id: str
) -> tuple[dict[str, int], list[Any]]:
    uow = harness.runtime.uow
    async with uow.begin() as tx:
        await store.insert_run(tx.conn, run_id, CHANNEL, merchant_id, BILL_DATE)
    async with uow.begin() as tx:
        await staging.stage(tx.conn, channel=CHANNEL, merchant_id=merchant_id, bill_date=BILL_DATE)
        copied = await staging.copy_lines(tx.conn, rows_of(lines))
        assert copied == len(lines)
        counts = await staging.classify(tx.conn, run_id, line_count=copied)
    async with uow.read() as conn:
        items = await store.list_items(
            conn, run_id=run_id, outcome=None, payment_id=None, merchant_order_no=None, after_id=0, limit=100_000
        )
    return counts, [tuple(item[f] for f in ITEM_FIELDS) for item in items]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_sql_classification_equals_the_matcher(settlement_only: Harness, seed: int) -> None:
    merchant_id = f"mch_eq{seed}"
    payments, refunds, lines = generate_day(seed, merchant_id)
    async with settlement_only.runtime.uow.begin() as tx:
        await tx.conn.execute(insert(payment_records), payments)
        if refunds:
            await tx.conn.execute(insert(refund_records), refunds)
        # another merchant's and another day's records must not be seen
        await tx.conn.execute(
            insert(payment_records),
            [
                {**payments[0], "payment_id": f"pay_other_{seed}", "merchant_id": "mch_someone_else"},
                {**payments[1], "payment_id": f"pay_late_{seed}", "bill_date": date(2026, 11, 25)},
            ],
        )

    matcher = Matcher(records_of(payments, refunds))
    results = [matcher.match(line) for line in lines]
    leftovers = list(matcher.leftovers())
    expected_counts = Counter(r.outcome.value for r in results + leftovers)
    expected_bill_items = [item_of(r) for r in results if r.outcome is not Outcome.MATCHED]

    counts, items = await run_sql(settlement_only, merchant_id, lines, f"rcn_eq{seed}")

    assert counts == dict(expected_counts)
    assert items[: len(expected_bill_items)] == expected_bill_items  # bill order
    assert sorted(items[len(expected_bill_items) :], key=repr) == sorted(map(item_of, leftovers), key=repr)
    # the generator really produced the order-dependent cases this test is about
    assert {o.value for o in Outcome} <= set(counts)
    assert len(lines) > len({(line.kind, line.key) for line in lines})


async def test_a_record_wanted_by_two_lines_goes_to_the_first_in_bill_order(settlement_only: Harness) -> None:
    """A line billed twice, and a line that reaches by channel number the record a later line has by key."""
    merchant_id = "mch_order"
    async with settlement_only.runtime.uow.begin() as tx:
        await tx.conn.execute(
            insert(payment_records),
            [
                {
                    "payment_id": f"pay_{k}",
                    "merchant_id": merchant_id,
                    "channel": CHANNEL,
                    "out_trade_no": k,
                    "channel_trade_no": f"ch_{k}",
                    "status": "succeeded",
                    "amount_minor": 100,
                    "currency": "CNY",
                    "channel_fee_minor": 1,
                    "bill_date": BILL_DATE,
                }
                for k in ("a", "b")
            ],
        )
    lines = [
        Line("payment", "a", "ch_a", 100, 1, "SUCCESS"),
        Line("payment", "a", "ch_a", 100, 1, "SUCCESS"),  # billed twice: the second is unknown to Juhe
        Line("payment", "zz", "ch_b", 100, 1, "SUCCESS"),  # takes b by channel number...
        Line("payment", "b", "ch_b", 100, 1, "SUCCESS"),  # ...so b's own line finds nothing left
    ]
    counts, items = await run_sql(settlement_only, merchant_id, lines, "rcn_order")
    assert counts == {"matched": 2, "missing_in_juhe": 2}
    assert [(i[0], i[3]) for i in items] == [("missing_in_juhe", "a"), ("missing_in_juhe", "b")]


async def test_a_failed_bill_stream_leaves_nothing_staged(settlement_only: Harness) -> None:
    """The cashier's stream breaking mid-COPY rolls the whole staging back; the pooled connection is
    clean for the next run (temporary tables are dropped with the transaction)."""

    async def broken() -> AsyncIterator[tuple[Any, ...]]:
        async for row in rows_of([Line("payment", "a", "", 1, 0, "SUCCESS")] * 3):
            yield row
        raise Problem(BILL_UNAVAILABLE, "connection reset mid-bill")

    uow = settlement_only.runtime.uow
    with pytest.raises(Problem):
        async with uow.begin() as tx:
            await staging.stage(tx.conn, channel=CHANNEL, merchant_id="mch_x", bill_date=BILL_DATE)
            await staging.copy_lines(tx.conn, broken())
    for _ in range(3):  # every pooled connection can stage again
        async with uow.begin() as tx:
            await staging.stage(tx.conn, channel=CHANNEL, merchant_id="mch_x", bill_date=BILL_DATE)
            assert await tx.conn.scalar(text("SELECT count(*) FROM rcn_line")) == 0
    async with uow.read() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'rcn_%'")) == 0


async def test_records_sharing_a_key_or_channel_number_count_once(settlement_only: Harness) -> None:
    """As the Python index kept one record per key: a duplicate is neither matched twice nor reported."""
    merchant_id = "mch_dup"
    base = {
        "merchant_id": merchant_id,
        "channel": CHANNEL,
        "status": "succeeded",
        "amount_minor": 100,
        "currency": "CNY",
        "channel_fee_minor": 1,
        "bill_date": BILL_DATE,
    }
    async with settlement_only.runtime.uow.begin() as tx:
        await tx.conn.execute(
            insert(payment_records),
            [
                {**base, "payment_id": "pay_d1", "out_trade_no": "same", "channel_trade_no": "ch_1"},
                {**base, "payment_id": "pay_d2", "out_trade_no": "same", "channel_trade_no": "ch_2"},
                {**base, "payment_id": "pay_d3", "out_trade_no": "k3", "channel_trade_no": "ch_shared"},
                {**base, "payment_id": "pay_d4", "out_trade_no": "k4", "channel_trade_no": "ch_shared"},
            ],
        )
    lines = [
        Line("payment", "same", "", 100, 1, "SUCCESS"),
        Line("payment", "k3", "", 100, 1, "SUCCESS"),
        Line("payment", "k4", "", 100, 1, "SUCCESS"),
    ]
    counts, items = await run_sql(settlement_only, merchant_id, lines, "rcn_dup")
    assert counts == {"matched": 3}
    assert items == []


async def test_a_merchant_funded_channel_coupon_is_reconciled_on_what_the_channel_settles(
    settlement_only: Harness,
) -> None:
    """The bill prints what the channel settles (WeChat 应结订单金额, Alipay 商家实收): a payment with a merchant-
    funded channel coupon U matches at G − U, its refund at R − the coupon's share (docs/ledger.md §3.15); the
    gross would be an amount mismatch."""
    from services.settlement.flows.entries import settlement_entry

    merchant_id = "mch_unsettled"
    payment = {
        "payment_id": "pay_u",
        "merchant_id": merchant_id,
        "channel": CHANNEL,
        "out_trade_no": "u",
        "channel_trade_no": "ch_u",
        "status": "succeeded",
        "amount_minor": 10_000,
        "currency": "CNY",
        "channel_fee_minor": 54,
        "bill_date": BILL_DATE,
    }
    gross = {**payment, "payment_id": "pay_g", "out_trade_no": "g", "channel_trade_no": "ch_g"}
    async with settlement_only.runtime.uow.begin() as tx:
        await tx.conn.execute(insert(payment_records), [payment, gross])
        await tx.conn.execute(
            insert(refund_records),
            [
                {
                    "refund_id": "re_u",
                    "payment_id": "pay_u",
                    "merchant_id": merchant_id,
                    "channel": CHANNEL,
                    "channel_refund_no": "chr_u",
                    "status": "succeeded",
                    "amount_minor": 4_000,
                    "currency": "CNY",
                    "bill_date": BILL_DATE,
                }
            ],
        )
        await tx.conn.execute(
            insert(settlement_entries),
            [
                settlement_entry("pay_u:unsettled", merchant_id, payment, -1_000, BILL_DATE, "payment"),
                settlement_entry("re_u:unsettled", merchant_id, payment, 400, BILL_DATE, "refund", "re_u"),
                settlement_entry("pay_g:unsettled", merchant_id, gross, -1_000, BILL_DATE, "payment"),
            ],
        )
    lines = [
        Line("payment", "u", "ch_u", 9_000, 54, "SUCCESS"),
        Line("refund", "re_u", "chr_u", 3_600, -22, "SUCCESS"),
        Line("payment", "g", "ch_g", 10_000, 54, "SUCCESS"),  # the channel printed the gross: not what it settles
    ]
    counts, items = await run_sql(settlement_only, merchant_id, lines, "rcn_unsettled")
    assert counts == {"matched": 2, "amount_mismatch": 1}
    assert [(i[0], i[3], i[8], i[9]) for i in items] == [("amount_mismatch", "g", 9_000, 10_000)]
