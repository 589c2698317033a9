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

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False).encode()

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
