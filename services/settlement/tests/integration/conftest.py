"""Harness for settlement's integration tests: a real ledger process, settlement in-process (real PostgreSQL).

Cashier events are applied through the very handlers the inbox consumer calls, inside a unit of work
(what `InboxConsumer` does, minus Kafka), so each test controls exactly which events arrive and when.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from libs.common.events import Envelope
from libs.common.outbox_tables import outbox
from libs.common.web import Runtime
from services.settlement.app import create_app
from services.settlement.context import SettlementContext, settlement_context
from services.settlement.events import (
    CASHIER_PAYMENTS_TOPIC,
    PAYMENT_EVENTS,
    REFUND_EVENTS,
)
from services.settlement.events.consumers import on_payment_event, on_refund_event


@dataclass
class Harness:
    client: httpx.AsyncClient
    runtime: Runtime
    ledger_url: str
    ledger_db: str
    settlement_db: str

    @property
    def context(self) -> SettlementContext:
        return settlement_context(self.runtime)

    async def deliver(self, event: Envelope) -> None:
        """Apply one cashier event exactly as the inbox consumer would (one transaction)."""
        handler = on_payment_event if event.type in PAYMENT_EVENTS else on_refund_event
        assert event.type in PAYMENT_EVENTS | REFUND_EVENTS
        async with self.runtime.uow.begin() as tx:
            await handler(tx, event)

    async def balance(self, holder_id: str, kind: str, currency: str = "CNY", *, livemode: bool = True) -> int:
        """The posted balance of the holder's account of `kind` in one book (live unless told)."""
        async with httpx.AsyncClient(base_url=self.ledger_url) as ledger:
            params = {"holder_id": holder_id, "livemode": "true" if livemode else "false"}
            page = (await ledger.get("/v1/accounts", params=params)).json()
        for account in page["data"]:
            if account["kind"] == kind and account["currency"] == currency:
                return int(account["balances"]["posted_balance_minor"])
        return 0

    async def published(self, event_type: str) -> list[dict[str, Any]]:
        """The events of a type settlement put in its outbox, oldest first (envelopes as dicts)."""
        async with self.runtime.uow.read() as conn:
            rows = await conn.execute(
                select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.seq)
            )
            return [json.loads(payload) for payload in rows.scalars()]

    def verify_ledger(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "services.ledger.verify", "--database-url", self.ledger_db],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def payment_event(
    payment_id: str,
    *,
    merchant_id: str = "mch_1",
    amount_minor: int = 10_000,
    kind: str = "payment.succeeded",
    fee_minor: int | None = 25,
    channel: str = "wechatpay",
    out_trade_no: str | None = None,
    merchant_order_no: str | None = None,
    succeeded_at: datetime | None = None,
    extra: dict[str, Any] | None = None,
) -> Envelope:
    out_trade_no = out_trade_no or payment_id.removeprefix("pay_")
    status = kind.removeprefix("payment.")
    return Envelope(
        type=kind,
        source="cashier",
        subject=payment_id,
        data={
            "payment_id": payment_id,
            "merchant_id": merchant_id,
            "merchant_order_no": merchant_order_no or f"o-{payment_id}",
            "status": status,
            "amount_minor": amount_minor,
            "currency": "CNY",
            "scene": "native_qr",
            "channel": channel,
            "route_id": None,
            "fee_minor": fee_minor,
            "fee_rate_bps": 25 if fee_minor is not None else None,
            "channel_trade_no": f"ch{out_trade_no}" if status == "succeeded" else None,
            "succeeded_at": (succeeded_at or datetime.now(UTC)).isoformat() if status == "succeeded" else None,
            "late_success": False,
            "outcome": status,
            "source": "notification",
            "attempt": {
                "attempt_id": f"att_{out_trade_no}",
                "seq": 1,
                "channel": channel,
                "out_trade_no": out_trade_no,
                "status": status,
            },
            **(extra or {}),
        },
    )


def refund_event(refund_id: str, payment_id: str, amount_minor: int, *, merchant_id: str = "mch_1") -> Envelope:
    return Envelope(
        type="refund.succeeded",
        source="cashier",
        subject=refund_id,
        data={
            "refund_id": refund_id,
            "payment_id": payment_id,
            "merchant_id": merchant_id,
            "status": "succeeded",
            "amount_minor": amount_minor,
            "currency": "CNY",
            "channel": "wechatpay",
            "channel_refund_no": f"ch{refund_id}",
            "succeeded_at": datetime.now(UTC).isoformat(),
            "outcome": "succeeded",
            "source": "notification",
        },
    )


@pytest.fixture
async def harness(
    migrated_database: Callable[..., Any],
    service_processes: Callable[..., Any],
    service_settings: Callable[..., Any],
    running_apps: Callable[..., Any],
    juhe_infra: Any,
) -> Harness:
    """Settlement in-process (API role: the test drives the split rounds) and a real ledger process."""
    ledger_db = await migrated_database("ledger")
    settlement_db = await migrated_database("settlement")
    ledger = service_processes(
        "ledger", {"database_url": ledger_db, "kafka_bootstrap_servers": juhe_infra.bootstrap, "role": "api"}
    )
    settings = service_settings("settlement", database_url=settlement_db, ledger_url=ledger.base_url, role="api")
    app = create_app(settings)
    client = await running_apps(app)
    return Harness(client, app.state.runtime, ledger.base_url, ledger_db, settlement_db)


@pytest.fixture
async def settlement_only(
    migrated_database: Callable[..., Any], service_settings: Callable[..., Any], running_apps: Callable[..., Any]
) -> Harness:
    """Settlement alone, for tests that never reach the ledger (its URL points nowhere)."""
    settlement_db = await migrated_database("settlement")
    settings = service_settings("settlement", database_url=settlement_db, ledger_url="http://127.0.0.1:9", role="api")
    app = create_app(settings)
    client = await running_apps(app)
    return Harness(client, app.state.runtime, "http://127.0.0.1:9", "", settlement_db)


__all__ = ["CASHIER_PAYMENTS_TOPIC", "Harness", "payment_event", "refund_event"]
