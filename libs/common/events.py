"""The event envelope every service publishes and consumes (CloudEvents-like, JSON).

`subject` is the aggregate id and also the Kafka key, so one aggregate's events keep their order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
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
        # Field by field, not `dataclasses.asdict`: asdict deep-copies `data` leaf by leaf, which was most of
        # the CPU of a bulk write (six `account.opened` per migrated person); the bytes are the same, and a
        # dataclass nested in `data` is still encoded as asdict would (`_encoded`).
        obj = {name: getattr(self, name) for name in _ENVELOPE_FIELDS}
        if obj["traceparent"] is None:
            del obj["traceparent"]  # tracing off: the same bytes as before the field existed
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_encoded).encode()

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


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope))


def _encoded(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Topics, one per aggregate family (docs/events.md §2). Created explicitly at platform start.
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
    "marketing.topups",
)
