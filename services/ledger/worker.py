"""The ledger worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from libs.common.web import BackgroundTask, Runtime
from services.ledger.api.deps import WRITER_EXTRA
from services.ledger.config import Settings
from services.ledger.domain.engine import VoidPending
from services.ledger.store.writer import LedgerWriter

log = get_logger("juhe.ledger.worker")


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return [expire_pending_transfers]


async def expire_due(runtime: Runtime, writer: LedgerWriter, batch_max: int) -> int:
    """Expires pending transfers whose timeout passed; returns how many were due.

    Goes through the same write path as everything else (locks, batching, events), so an expiry racing a
    post of the same hold is decided by the row lock: exactly one of them wins.
    """
    async with runtime.uow.read() as conn:
        due = (
            (
                await conn.execute(
                    text(
                        "SELECT id FROM transfers WHERE status = 'pending' AND timeout_at <= clock_timestamp()"
                        " ORDER BY timeout_at LIMIT :n"
                    ),
                    {"n": batch_max},
                )
            )
            .scalars()
            .all()
        )
    if due:
        await asyncio.gather(*(writer.submit(VoidPending(transfer_id, expired=True)) for transfer_id in due))
        log.info("pending transfers expired", count=len(due))
    return len(due)


async def expire_pending_transfers(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    writer: LedgerWriter = runtime.extras[WRITER_EXTRA]
    while True:
        try:
            due = await expire_due(runtime, writer, settings.expiry_batch_max)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiry round failed")
            due = 0
        if due < settings.expiry_batch_max:
            await asyncio.sleep(settings.expiry_interval_seconds)
