"""Alipay-funded vouchers on the sandbox's own clock (vouchers.py), without a server."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sandboxes.alipay.trades import BEIJING
from sandboxes.alipay.vouchers import ACTIVITIES, AlipayVoucherRequest, Vouchers
from sandboxes.common.store import DocumentStore


def test_an_alipay_voucher_issued_on_29_february_is_valid_for_a_year(tmp_path: Path) -> None:
    messages: list[tuple[str, str, dict[str, Any]]] = []
    leap_day = datetime(2028, 2, 29, 10, 0, tzinfo=BEIJING)
    vouchers = Vouchers(DocumentStore(tmp_path / "s.sqlite3"), lambda: leap_day, lambda *m: messages.append(m))
    issued = vouchers.issue_alipay_voucher(
        AlipayVoucherRequest(app_id="2021000000000001", buyer_id="2088102146225135", amount_minor=500)
    )
    activity = vouchers.store.get(ACTIVITIES, issued["activity_id"])
    assert activity is not None
    assert (activity["valid_begin_time"], activity["valid_end_time"]) == ("2028-02-29 10:00:00", "2029-02-28 10:00:00")
    assert messages == []  # Alipay's own voucher: no message to the merchant's gateway
