"""Internal: a channel's daily bill, downloaded through the merchant's connector, as NDJSON.

For settlement's reconciliation (对账): the cashier owns the connectors and the merchants' channel keys,
so settlement asks here rather than talking to channels. One parsed `BillLine` per line, amounts in fen,
so the reader can stream it line by line. Not for merchants: the gateway does not expose /v1/internal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from libs.common.errors import Problem
from services.cashier.api.deps import CashierDep
from services.cashier.connectors.base import BillLine, ChannelError, ChannelUnavailable
from services.cashier.connectors.registry import channel_spec
from services.cashier.domain.errors import CHANNEL_REFUSED, CHANNEL_UNAVAILABLE
from services.cashier.store.merchants import list_channels

router = APIRouter(tags=["internal"])

NDJSON = "application/x-ndjson"


def line_json(line: BillLine) -> bytes:
    return (
        json.dumps(
            {
                "kind": line.kind.value,
                "out_trade_no": line.out_trade_no,
                "channel_trade_no": line.channel_trade_no,
                "amount_minor": line.amount_minor,
                "fee_minor": line.fee_minor,
                "status": line.status,
                "occurred_at": line.occurred_at.isoformat(),
                "out_refund_no": line.out_refund_no,
                "channel_refund_no": line.channel_refund_no,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )


@router.get("/v1/internal/bills/{channel}/{bill_date}")
async def download_bill(
    channel: str,
    bill_date: date,
    cashier: CashierDep,
    merchant_id: str = Query(min_length=1, max_length=64),
    livemode: bool | None = Query(default=None, description="The bill of the configuration of this mode only"),
) -> StreamingResponse:
    """With `livemode` (settlement's reconciliation of one mode), only the merchant's configuration of that mode
    is asked: a test run gets a sandbox's bill, a live run a real channel's (docs/test-mode.md); none of that mode
    is 422 `no_route_available`. `X-Bill-Livemode` says the mode of the configuration the bill came from, so a
    reader that did not name one compares the bill with that mode's payments only."""
    channel_spec(channel)  # unknown_channel (404) before any download
    connector = await cashier.connectors.get(merchant_id, channel, livemode=livemode)
    if livemode is None:  # the merchant's only configuration of the channel (get() refuses a choice between two)
        async with cashier.uow.read() as conn:
            configs = [r for r in await list_channels(conn, merchant_id, enabled_only=False) if r.channel == channel]
        livemode = all(r.mode == "live" for r in configs)
    try:
        bill = await connector.download_bill(bill_date)
    except ChannelUnavailable as exc:
        raise Problem(CHANNEL_UNAVAILABLE, f"{channel} bill of {bill_date}: {exc}") from exc
    except ChannelError as exc:
        raise Problem(
            CHANNEL_REFUSED, f"{channel} bill of {bill_date}: {exc.code} {exc.message}", channel_code=exc.code
        ) from exc

    def rows() -> Iterator[bytes]:
        for line in bill.lines:
            yield line_json(line)

    headers = {"X-Bill-Lines": str(len(bill.lines)), "X-Bill-Livemode": "true" if livemode else "false"}
    return StreamingResponse(rows(), media_type=NDJSON, headers=headers)
