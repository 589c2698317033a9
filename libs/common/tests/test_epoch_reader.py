"""The epoch watcher's steady check through one kept consumer (libs/common/kafka.py `EpochReader`): it reads the
same marker as the full read while the broker stays, and a restarted memory-only broker is still found as a new
epoch (ADR 0004), on a broker of the test's own (restarted on the same port)."""

from __future__ import annotations

from pathlib import Path

from libs.common.embedded import EmbeddedBroker, free_port
from libs.common.kafka import EpochWatcher, read_or_create_broker_epoch


async def test_the_kept_reader_answers_while_the_broker_stays_and_a_restarted_broker_is_a_new_epoch(
    tmp_path: Path,
) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    watcher = EpochWatcher(broker.bootstrap, interval_seconds=1)
    try:
        first = await watcher.refresh()  # the full read: creates the topic and the marker
        assert first == await read_or_create_broker_epoch(broker.bootstrap)
        assert await watcher.refresh() == first  # the kept reader's answer
        assert watcher._reader._consumer is not None, "the steady check keeps its consumer"
        assert watcher.version == 1

        broker.stop()
        broker.start()  # memory-only: no topic, no marker
        second = await watcher.refresh()  # the kept reader misses, the full read writes a new marker
        assert second != first
        assert watcher.version == 2
        assert await watcher.refresh() == second
    finally:
        await watcher.close()
        broker.stop()
