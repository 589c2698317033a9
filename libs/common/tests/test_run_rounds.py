"""`run_rounds`: the polling loop every service's worker uses (libs/common/web.py)."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.web import idle_delay_max, run_rounds

AN_HOUR_SECONDS = 3600.0


async def test_a_failed_round_does_not_end_the_loop() -> None:
    answers: list[object] = [RuntimeError("dependency down"), 10, 10, 3]
    rounds: list[object] = []
    waiting = asyncio.Event()

    async def round_once() -> int:
        answer = answers[len(rounds)]
        rounds.append(answer)
        if len(rounds) == len(answers):
            waiting.set()
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, int)
        return answer

    loop = asyncio.create_task(run_rounds("test", round_once, interval_seconds=0.0, batch_max=10))
    await asyncio.wait_for(waiting.wait(), timeout=10)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert rounds == answers


async def test_full_batches_never_wait_for_the_interval() -> None:
    rounds = 0
    three_full = asyncio.Event()

    async def full_batch() -> int:
        nonlocal rounds
        rounds += 1
        if rounds == 3:
            three_full.set()
        return 5

    loop = asyncio.create_task(run_rounds("test", full_batch, interval_seconds=AN_HOUR_SECONDS, batch_max=5))
    await asyncio.wait_for(three_full.wait(), timeout=10)  # would need two hours if a full batch slept
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


async def test_without_batch_max_every_round_waits_the_interval() -> None:
    rounds = 0

    async def busy() -> int:
        nonlocal rounds
        rounds += 1
        return 1_000_000

    loop = asyncio.create_task(run_rounds("test", busy, interval_seconds=AN_HOUR_SECONDS))
    for _ in range(20):
        await asyncio.sleep(0)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert rounds == 1


async def test_an_idle_loop_spaces_its_rounds_out_and_work_brings_it_back() -> None:
    """Rounds that find nothing double the wait (up to 4 × the interval, at most 4 s); a round that did something
    comes back to the interval; a long interval is never spaced out further."""
    answers = [0, 0, 0, 0, 2, 0, None, 0]
    delays: list[float] = []
    all_slept = asyncio.Event()

    async def round_once() -> int | None:
        return answers[len(delays)] if len(delays) < len(answers) else 0

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == len(answers):
            all_slept.set()
        await asyncio.sleep(0)

    loop = asyncio.create_task(run_rounds("test", round_once, interval_seconds=0.5, sleep=sleep))
    await asyncio.wait_for(all_slept.wait(), timeout=10)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert delays[: len(answers)] == [1.0, 2.0, 2.0, 2.0, 0.5, 1.0, 0.5, 1.0]
    assert idle_delay_max(2.0) == 4.0 and idle_delay_max(60.0) == 60.0
