"""One step of a payout or withdrawal on a channel rail (WeChat change, an Alipay account): submit, ask again,
or cancel a transfer the user left unconfirmed past its deadline. The rails themselves, and how their answers are
put in the bank's vocabulary, are the client in services/settlement/clients/rails.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.settlement.clients.rails import WAITING_USER, ChannelRails, transfer_no


async def channel_answer(
    channels: ChannelRails, row: dict[str, Any], *, payout_no: str, remark: str, confirm_seconds: float, now: datetime
) -> dict[str, Any]:
    """One step of a channel-rail payout or withdrawal (`row`: its rail, payee in account_no / account_name,
    amount, submitted_at): submit it (first time, or the answer was lost: the channel is idempotent), else ask
    again; a transfer still waiting for the user past `confirm_seconds` is cancelled at the channel (WeChat then
    answers CANCELLED, a final failure: the money goes back)."""
    rail, number = str(row["rail"]), transfer_no(payout_no)
    if row["submitted_at"] is None:
        return await channels.submit(
            rail,
            payout_no=number,
            amount_minor=int(row["amount_minor"]),
            currency=str(row["currency"]),
            payee=str(row["account_no"]),
            payee_name=row.get("account_name") or None,
            remark=remark,
        )
    answer = await channels.query(rail, number)
    if answer["status"] == WAITING_USER and now - row["submitted_at"] >= timedelta(seconds=confirm_seconds):
        answer = await channels.cancel(rail, number)
    return answer
