"""§3.5 from the bill: the channel settled the day's net to escrow (Dr 1102 escrow_bank; Cr 1101
channel_clearing[channel]), posted once per channel, merchant and day, against a real ledger process."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx

from services.settlement.clients.ledger import LedgerClient
from services.settlement.domain.reconciliation import Line, settled_minor
from services.settlement.flows.reconcile import channel_settlement_key, post_channel_settlement
from services.settlement.tests.integration.conftest import Harness

DAY = date(2026, 11, 24)


async def accounts(harness: Harness) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=harness.ledger_url) as ledger:
        page = (await ledger.get("/v1/accounts", params={"holder_id": "platform", "limit": 100})).json()
    return list(page["data"])


async def balance_of(harness: Harness, kind: str, channel: str | None = None) -> int:
    for account in await accounts(harness):
        if account["kind"] == kind and (channel is None or account["metadata"].get("channel") == channel):
            return int(account["balances"]["posted_balance_minor"])
    return 0


async def test_the_bill_net_moves_from_channel_clearing_to_escrow_once(harness: Harness) -> None:
    ledger: LedgerClient = harness.context.ledger
    bill = [
        Line("payment", "a", "ch_a", 10_000, 60, "SUCCESS"),
        Line("payment", "b", "ch_b", 5_000, 30, "SUCCESS"),
        Line("refund", "re_a", "ch_a", 2_000, -12, "SUCCESS"),  # WeChat prints the returned fee negative
        Line("refund", "re_b", "ch_b", 1_000, -6, "PROCESSING"),  # not moved yet
    ]
    net = sum(settled_minor(line) for line in bill)
    assert net == (10_000 - 60) + (5_000 - 30) - (2_000 - 12)

    async def post(net_minor: int, day: date = DAY, channel: str = "wechatpay") -> str | None:
        return await post_channel_settlement(
            ledger, channel=channel, merchant_id="mch_r", bill_date=day, net_minor=net_minor, bill_lines=len(bill)
        )

    assert await post(net) is None
    assert await balance_of(harness, "escrow_bank") == net
    assert await balance_of(harness, "channel_clearing", "wechatpay") == -net  # debit-normal: receivable settled
    # the day again (a second run, a crash and retry): the same transfer, nothing moves twice
    assert await post(net) is None
    assert await balance_of(harness, "escrow_bank") == net
    transfer = await ledger.find_transfer(channel_settlement_key("wechatpay", "mch_r", DAY))
    assert transfer is not None and transfer["reference"] == "stl_wechatpay_mch_r_2026-11-24"
    # the channel re-issued the day with another net: refused, said on the run, nothing moved
    error = await post(net + 1)
    assert error is not None and "idempotency_key_reused" in error
    assert await balance_of(harness, "escrow_bank") == net

    # a day where refunds outweigh payments moves money back; more than escrow holds is refused
    assert await post(-1_000, date(2026, 11, 25)) is None
    assert await balance_of(harness, "escrow_bank") == net - 1_000
    assert await balance_of(harness, "channel_clearing", "wechatpay") == -net + 1_000
    refused = await post(-(net - 1_000) - 1, date(2026, 11, 26))
    assert refused is not None and "not posted" in refused
    assert await balance_of(harness, "escrow_bank") == net - 1_000
    # nothing to move, nothing posted
    assert await post(0, date(2026, 11, 27)) is None
    assert await ledger.find_transfer(channel_settlement_key("wechatpay", "mch_r", date(2026, 11, 27))) is None

    # each channel has its own clearing account: the chart one the ledger's cashier consumer posts to
    assert await post(700, channel="alipay") is None
    clearing = [a for a in await accounts(harness) if a["kind"] == "channel_clearing"]
    assert sorted(a["metadata"]["channel"] for a in clearing) == ["alipay", "wechatpay"]
    assert await balance_of(harness, "channel_clearing", "alipay") == -700
    harness.verify_ledger()
