"""The broker epoch watcher (libs/common/kafka.py): checks space out while the epoch is steady, come back to the
base interval after a failure, and a relay's `nudge` makes it check at once, on the real broker."""

from __future__ import annotations

import asyncio

from libs.common.kafka import EPOCH_CHECK_BACKOFF_MAX_FACTOR, EpochWatcher, next_check_delay
from libs.common.tasks import stop_task
from libs.common.testing.infra import Infra
from libs.common.testing.waiting import eventually


def test_checks_space_out_while_steady_up_to_the_cap_and_start_over_after_a_failure() -> None:
    delays, delay = [], 2.0
    for steady in (True, True, True, False, True):
        delay = next_check_delay(delay, base=2.0, steady=steady)
        delays.append(delay)
    assert delays == [4.0, 8.0, 8.0, 2.0, 4.0]
    assert max(delays) == 2.0 * EPOCH_CHECK_BACKOFF_MAX_FACTOR


class CountingWatcher(EpochWatcher):
    """The real watcher, counting its checks."""

    checks = 0

    async def refresh(self) -> str:
        self.checks += 1
        return await super().refresh()


async def test_a_nudge_checks_at_once_instead_of_after_the_interval(juhe_infra: Infra) -> None:
    watcher = CountingWatcher(juhe_infra.bootstrap, interval_seconds=3600)  # only a nudge brings a second check
    task = asyncio.create_task(watcher.run())
    try:
        await eventually(lambda: watcher.checks == 1 and watcher.epoch, "the first check")
        watcher.nudge()
        await eventually(lambda: watcher.checks == 2, "a second check right after the nudge")
    finally:
        await stop_task(task, name="epoch watcher")
