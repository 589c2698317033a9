"""Asynchronous notification delivery with the channel's retry schedule.

Each job is POSTed to the merchant's notify URL until the channel's acknowledgement rule says it
was accepted (WeChat: HTTP 200/204; Alipay: the literal body `success`) or the schedule runs out.
The schedule is the channel's real one (e.g. WeChat 15s/15s/30s/3m/...), multiplied by `scale`
(`JUHE_SANDBOX_NOTIFY_SCALE=0.001` turns 24 hours into about 90 seconds) so tests stay fast.

Each attempt calls `job.build()` again: channels re-sign every retry with a fresh timestamp, and a
retry 6 hours later must not carry a stale signature.

Fault modes (from FaultSettings):
- duplicate: after a job is acknowledged it is delivered once more, the same event id again;
- out of order: a job is held back until the next job has been delivered (or `hold_seconds`
  passes), so e.g. REFUND.SUCCESS can arrive before TRANSACTION.SUCCESS.

The POSTs go over kept-alive connections (`http_client.KeepAliveClient`: one notification per payment made
httpx the largest cost of the sandboxes' process, docs/performance.md, "Sixth pass").

Pending jobs live in memory: a sandbox restart drops undelivered notifications (the connector's
status query is the safety net, exactly as with the real channels).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandboxes.common.faults import FaultSettings
from sandboxes.common.http_client import KeepAliveClient, Reply, TransportError

logger = logging.getLogger(__name__)

PENDING_JOBS_MAX = 10_000
DELIVERY_LOG_MAX = 2_000
DELIVERY_TIMEOUT_SECONDS = 5.0
OUT_OF_ORDER_HOLD_SECONDS = 2.0

Acknowledged = Callable[[Reply], bool]


@dataclass(slots=True)
class NotificationJob:
    """One notification: where to send it and how to build (and re-sign) its request."""

    event_id: str
    url: str
    build: Callable[[], tuple[dict[str, str], bytes]]  # -> (headers, body), called per attempt
    event_type: str = ""
    subject: str = ""  # e.g. the out_trade_no, for the delivery log


@dataclass(slots=True)
class DeliveryRecord:
    event_id: str
    event_type: str
    subject: str
    url: str
    attempt: int
    status_code: int | None
    acknowledged: bool
    error: str | None
    at_unix: float = field(default_factory=time.time)
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class NotificationDispatcher:
    def __init__(
        self,
        *,
        schedule_seconds: Sequence[float],
        is_acknowledged: Acknowledged,
        faults: FaultSettings,
        scale: float = 1.0,
        timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
        hold_seconds: float = OUT_OF_ORDER_HOLD_SECONDS,
    ) -> None:
        if scale < 0:
            raise ValueError("scale must be >= 0")
        self.schedule_seconds = list(schedule_seconds)
        self.is_acknowledged = is_acknowledged
        self.faults = faults
        self.scale = scale
        self.timeout_seconds = timeout_seconds
        self.hold_seconds = hold_seconds
        self.deliveries: deque[DeliveryRecord] = deque(maxlen=DELIVERY_LOG_MAX)
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: NotificationJob | None = None
        self._held_release: asyncio.TimerHandle | None = None
        self._client: KeepAliveClient | None = None

    async def start(self) -> None:
        self._client = KeepAliveClient(timeout_seconds=self.timeout_seconds)

    async def stop(self) -> None:
        if self._held_release is not None:
            self._held_release.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    @property
    def pending_count(self) -> int:
        return len(self._tasks) + (1 if self._held is not None else 0)

    def submit(self, job: NotificationJob) -> None:
        """Queue a job; must be called from the event loop thread."""
        if self.pending_count >= PENDING_JOBS_MAX:
            logger.warning("notification queue full, dropping %s", job.event_id)
            return
        if not self.faults.out_of_order_notifications:
            self._spawn(job)
            return
        if self._held is None:
            self._held = job
            loop = asyncio.get_running_loop()
            self._held_release = loop.call_later(self.hold_seconds, self._release_held)
            return
        held, self._held = self._held, None
        if self._held_release is not None:
            self._held_release.cancel()
        self._spawn(job, then=held)

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._spawn(held)

    def _spawn(self, job: NotificationJob, *, then: NotificationJob | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver_chain(job, then))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_chain(self, job: NotificationJob, then: NotificationJob | None) -> None:
        if then is None:
            await self._deliver(job)
            return
        # The later job goes first; the earlier one follows once the first attempt of the later one is made.
        first_attempt_done = asyncio.Event()
        later = asyncio.create_task(self._deliver(job, first_attempt_done=first_attempt_done))
        try:
            await first_attempt_done.wait()
            await asyncio.gather(later, self._deliver(then))
        finally:
            later.cancel()  # no-op when finished; stops it when the dispatcher is stopping

    async def _deliver(self, job: NotificationJob, *, first_attempt_done: asyncio.Event | None = None) -> None:
        delays = [0.0, *self.schedule_seconds]
        for attempt, delay in enumerate(delays, start=1):
            if delay:
                await asyncio.sleep(delay * self.scale)
            acknowledged = await self._attempt(job, attempt)
            if first_attempt_done is not None:
                first_attempt_done.set()
            if acknowledged:
                if self.faults.duplicate_notifications:
                    await self._attempt(job, attempt + 1, duplicate=True)
                return
        logger.info("notification %s gave up after %d attempts", job.event_id, len(delays))

    async def _attempt(self, job: NotificationJob, attempt: int, *, duplicate: bool = False) -> bool:
        assert self._client is not None, "dispatcher not started"
        headers, body = job.build()
        status_code: int | None = None
        error: str | None = None
        acknowledged = False
        try:
            reply = await self._client.post(job.url, body, headers)
            status_code = reply.status_code
            acknowledged = self.is_acknowledged(reply)
        except TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(
            DeliveryRecord(
                event_id=job.event_id,
                event_type=job.event_type,
                subject=job.subject,
                url=job.url,
                attempt=attempt,
                status_code=status_code,
                acknowledged=acknowledged,
                error=error,
                duplicate=duplicate,
            )
        )
        return acknowledged
