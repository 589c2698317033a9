"""The event envelope every service publishes and consumes (CloudEvents-like, JSON).

`subject` is the aggregate id and also the Kafka key, so one aggregate's events keep their order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from libs.common.ids import new_id


@dataclass(frozen=True, slots=True)
class Envelope:
    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: new_id("evt"))
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    data_version: int = 1
    trace_id: str | None = None
    # W3C trace context of the transaction that wrote the event (libs.common.tracing): the consumer's span
    # continues it, so a request and the events it causes are one trace. Absent while tracing is off.
    traceparent: str | None = None

    def to_bytes(self) -> bytes:
        obj = asdict(self)
        if obj["traceparent"] is None:
            del obj["traceparent"]  # tracing off: the same bytes as before the field existed
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        obj = json.loads(raw)
        return cls(
            id=obj["id"],
            type=obj["type"],
            source=obj["source"],
            subject=obj["subject"],
            time=obj["time"],
            data_version=int(obj.get("data_version", 1)),
            data=obj.get("data") or {},
            trace_id=obj.get("trace_id"),
            traceparent=obj.get("traceparent"),
        )


# Topics, one per aggregate family (DESIGN.md §3). Created explicitly at platform start.
TOPIC_PARTITIONS = 4
TOPICS: tuple[str, ...] = (
    "cashier.payments",
    "cashier.refunds",
    "ledger.accounts",
    "ledger.transfers",
    "ledger.wallet",
    "routing.channels",
    "settlement.splits",
    "settlement.batches",
    "settlement.payouts",
    "marketing.coupons",
    "marketing.points",
)
