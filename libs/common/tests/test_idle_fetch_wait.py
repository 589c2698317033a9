"""A consumer's fetch wait grows while its fetches come back empty and is short again at the first record
(libs/common/kafka.py `IdleFetchWait`; docs/performance.md, "Fifth pass"): on the embedded broker an idle fetch is
answered only when its wait runs out, so the wait decides how many requests an idle consumer makes."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common.kafka import EPOCH_TOPIC, IdleFetchWait
from libs.common.testing.infra import Infra


async def test_the_wait_grows_after_the_quiet_spell_and_shrinks_at_the_first_record(juhe_infra: Infra) -> None:
    now = [100.0]
    consumer = AIOKafkaConsumer(bootstrap_servers=juhe_infra.bootstrap, fetch_max_wait_ms=500)
    await consumer.start()
    consumer.assign([TopicPartition(EPOCH_TOPIC, 0)])  # the session's broker has it (juhe_infra)
    try:
        wait = IdleFetchWait(consumer, busy_ms=500, idle_ms=3000, idle_after_seconds=10, clock=lambda: now[0])

        def fetch_wait() -> int:  # what aiokafka puts in each fetch request
            return int(consumer._fetcher._fetch_max_wait_ms)

        await asyncio.sleep(0)  # let aiokafka's tasks start: one cancelled before its first step breaks stop()
        now[0] += 9
        wait.observe(got_records=False)
        assert (wait.idle, fetch_wait()) == (False, 500), "not yet quiet for long enough"
        now[0] += 2
        wait.observe(got_records=False)
        assert (wait.idle, fetch_wait()) == (True, 3000)
        wait.observe(got_records=True)
        assert (wait.idle, fetch_wait()) == (False, 500), "a record brings the short wait back at once"
        now[0] += 5
        wait.observe(got_records=False)
        assert (wait.idle, fetch_wait()) == (False, 500), "the quiet spell counts from the last record"
    finally:
        await consumer.stop()
