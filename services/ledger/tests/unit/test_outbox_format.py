"""The write path serializes outbox envelopes itself (speed); they must equal Envelope.to_bytes()."""

from __future__ import annotations

from libs.common.events import Envelope
from services.ledger.store.writer import envelope_bytes


def test_envelope_bytes_identical_to_common_envelope() -> None:
    data = {"transfer_id": "tr_1", "postings": [{"amount_minor": 2**63 - 1, "direction": "debit"}], "note": "分账"}
    envelope = Envelope(
        type="transfer.posted",
        source="ledger",
        subject="tr_1",
        data=data,
        id="evt_1",
        time="2026-01-01T00:00:00+00:00",
        trace_id="abc",
    )
    ours = envelope_bytes(
        event_id="evt_1",
        type="transfer.posted",
        source="ledger",
        subject="tr_1",
        data=data,
        time="2026-01-01T00:00:00+00:00",
        trace_id="abc",
    )
    assert ours == envelope.to_bytes()
    assert Envelope.from_bytes(ours) == envelope
