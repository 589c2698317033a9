"""Transfer events written by the batching writer reach Kafka through the platform's outbox relay."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from libs.common.events import Envelope
from libs.common.kafka import topic_name


async def test_transfer_events_are_relayed(ledger_factory: Any, platform_topics: str, juhe_infra: Any) -> None:
    ledger = await ledger_factory()
    clearing = await ledger.open("channel_clearing", "1101", holder_id="platform")
    wallet = await ledger.wallet()
    posted = (await ledger.transfer(clearing, wallet, 100, key="pay_e:succeeded", reference="pay_e")).json()
    hold = (await ledger.transfer(wallet, clearing, 40, pending=True)).json()
    await ledger.client.post(f"/v1/transfers/{hold['id']}/void")

    consumer = AIOKafkaConsumer(
        topic_name(platform_topics, "ledger.transfers"),
        bootstrap_servers=juhe_infra.bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: dict[str, list[str]] = {}
    try:
        async with asyncio.timeout(30):
            while sum(len(v) for v in seen.values()) < 3:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = Envelope.from_bytes(record.value)
                        assert record.key.decode() == event.subject
                        seen.setdefault(event.subject, []).append(event.type)
                        if event.subject == posted["id"]:
                            assert event.source == "ledger" and event.data["reference"] == "pay_e"
                            assert [p["amount_minor"] for p in event.data["postings"]] == [100, 100]
    finally:
        await consumer.stop()
    assert seen[posted["id"]] == ["transfer.posted"]
    assert seen[hold["id"]] == ["transfer.pending", "transfer.voided"]  # one key, one partition: in order
