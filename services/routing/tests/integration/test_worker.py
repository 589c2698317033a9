"""The routing worker's health sweep: a failing round is logged with its exception and the loop goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from libs.common.db import UnitOfWork, create_engine
from libs.common.logging import configure_logging
from libs.common.tasks import stop_task
from libs.common.testing.waiting import eventually
from libs.common.web import Runtime
from services.routing.context import build_routing_context
from services.routing.worker import health_sweep


def failed_rounds(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The structured events of failed sweep rounds (structlog hands its event dict to stdlib as `msg`)."""
    events = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    return [e for e in events if e.get("event") == "worker round failed" and e.get("round") == "routing health sweep"]


async def test_a_failing_sweep_is_logged_with_its_exception_and_retried(
    routing_db: str, service_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("routing")  # as the service does: structlog through stdlib logging (JSON)
    logging.getLogger().addHandler(caplog.handler)  # configure_logging replaced the root's handlers
    caplog.set_level(logging.INFO)
    settings = service_settings("routing", database_url=routing_db, health_sweep_interval_seconds=0.05)
    engine = create_engine(routing_db)
    try:
        async with engine.begin() as conn:  # every round now fails reading the routing settings row
            await conn.execute(text("DELETE FROM routing_config"))
        runtime = Runtime(settings=settings, engine=engine, uow=UnitOfWork(engine, source="routing"))
        runtime.context = build_routing_context(settings, runtime)
        sweep = asyncio.create_task(health_sweep(runtime))
        await eventually(lambda: len(failed_rounds(caplog)) >= 2 or sweep.done(), "two failed rounds logged")
        assert not sweep.done(), "the sweep loop died of a failed round"
        assert await stop_task(sweep, name="health sweep")
    finally:
        await engine.dispose()
    records = failed_rounds(caplog)
    assert len(records) >= 2, "a failed sweep round was not logged (or not retried)"
    assert records[0]["level"] == "error"
    assert "NoResultFound" in records[0]["exception"]  # the traceback, not only a message
