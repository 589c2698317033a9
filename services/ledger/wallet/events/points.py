"""Marketing's points instructions (`marketing.points`) posted to the user's points sub-account (XXX units).

Marketing decides how many points a payment earns and how many a refund takes back (services/marketing,
"Points rules"); the balance lives here, in the wallet's points sub-account (docs/ledger.md §3.11):

- `points.earned` → a `points_grant` operation (Dr 3102 points_issued, Cr 2306 user_points), business key
  `<payment>:earned`;
- `points.reversed` → a `points_reversal` operation (Dr 2306 user_points, Cr 3102 points_issued) of that
  reversal's points, business key `<payment>:reversed:<reversed_points_total>` (each reversal instruction
  carries the payment's running total, so a redelivery is the same key and posts nothing twice);
- `points.exchanged` (points spent on a coupon) → a `points_redemption` operation with the same lines, key
  `<exchange id>` (the coupon is marketing's; the points simply leave the user);
- `points.expired` (what was left of a lot at its expiry) → a `points_expiry` operation with the same lines,
  key `<payment>:expired` (a lot expires once).

Both are wallet operations through the batching writer (idempotent by kind + key). What cannot be posted is
logged and skipped, never retried forever: a payer without a wallet holder (nothing to credit: marketing keeps
the earning), and a reversal or expiry of points the user already cashed here (`/points/exchanges`, which
marketing's lots do not know; the sub-account does not go negative; the shortfall is logged for operators).
Marketing never sends a lot more than it granted: a reversal takes at most what exchanges and expiry left.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from libs.common.db import Tx, UnitOfWork
from libs.common.events import Envelope
from libs.common.inbox import Subscription
from libs.common.logging import get_logger
from services.ledger.domain import chart
from services.ledger.domain import errors as ledger_errors
from services.ledger.domain.errors import LedgerError
from services.ledger.store.writer import LedgerWriter
from services.ledger.wallet.domain import errors as wallet_errors
from services.ledger.wallet.domain import postings as p
from services.ledger.wallet.domain.entitlements import Action, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.flows import wallet as wallet_flows
from services.ledger.wallet.store import wallet as store

log = get_logger("juhe.ledger.points")

POINTS_TOPIC = "marketing.points"
POINTS_EARNED = "points.earned"
POINTS_REVERSED = "points.reversed"
POINTS_EXCHANGED = "points.exchanged"
POINTS_EXPIRED = "points.expired"
PLATFORM = "platform"
# Refusals that a redelivery would meet again: logged and skipped (see the module docstring).
SKIPPED = frozenset(
    {
        wallet_errors.HOLDER_NOT_FOUND.code,
        wallet_errors.SUBACCOUNT_NOT_FOUND.code,
        wallet_errors.ENTITLEMENT_DENIED.code,
        wallet_errors.LIMIT_EXCEEDED.code,
        ledger_errors.INSUFFICIENT_FUNDS.code,
    }
)


class PointsPostings:
    def __init__(self, uow: UnitOfWork, writer: LedgerWriter) -> None:
        self.uow = uow
        self.writer = writer

    def subscriptions(self) -> list[Subscription]:
        kinds = frozenset({POINTS_EARNED, POINTS_REVERSED, POINTS_EXCHANGED, POINTS_EXPIRED})
        return [Subscription(POINTS_TOPIC, self.on_points_event, kinds)]

    async def on_points_event(self, tx: Tx, event: Envelope) -> None:
        data: dict[str, Any] = event.data
        points = int(data.get("points") or 0)
        if points <= 0:
            return
        try:
            if event.type == POINTS_EARNED:
                await wallet_flows.grant_points(
                    self.uow,
                    self.writer,
                    holder_id=str(data["user_id"]),
                    grant_id=f"{data['payment_id']}:earned",
                    points_count=points,
                    now=datetime.now(UTC),
                )
            elif event.type == POINTS_REVERSED:
                key = f"{data['payment_id']}:reversed:{int(data.get('reversed_points_total') or points)}"
                await self.take_back(data, points, kind="points_reversal", key=key, reference=str(data["payment_id"]))
            elif event.type == POINTS_EXCHANGED:
                exchange_id = str(data["exchange_id"])
                await self.take_back(data, points, kind="points_redemption", key=exchange_id, reference=exchange_id)
            else:
                key = f"{data['payment_id']}:expired"
                await self.take_back(data, points, kind="points_expiry", key=key, reference=str(data["payment_id"]))
        except (WalletError, LedgerError) as exc:
            if exc.spec.code not in SKIPPED:
                raise
            log.warning(
                "points instruction not posted",
                event_type=event.type,
                payment_id=data.get("payment_id"),
                user_id=data.get("user_id"),
                points=points,
                code=exc.spec.code,
            )

    async def take_back(self, data: dict[str, Any], points: int, *, kind: str, key: str, reference: str) -> None:
        """Take points out of the user's points sub-account (a reversal, an exchange or an expiry), once per
        `(kind, key)`: Dr 2306 user_points, Cr 3102 points_issued."""
        holder_id = str(data["user_id"])
        async with self.uow.begin() as tx:
            await store.require_holder(tx.conn, holder_id)
            account = await store.get_subaccount_id(tx.conn, holder_id, SubaccountType.POINTS, p.POINTS_CURRENCY)
            if account is None:
                raise WalletError(wallet_errors.SUBACCOUNT_NOT_FOUND, f"{holder_id} has no points sub-account")
            issued = await store.shared_account(
                tx, holder_id=PLATFORM, entry=chart.POINTS_ISSUED, currency=p.POINTS_CURRENCY
            )
        await store.execute(
            self.uow,
            self.writer,
            store.Movement(
                holder_id,
                kind,
                key,
                points,
                p.POINTS_CURRENCY,
                [p.dr(account, points, p.POINTS_CURRENCY), p.cr(issued, points, p.POINTS_CURRENCY)],
                [(SubaccountType.POINTS, Action.SPEND)],
                reference=reference,
            ),
            now=datetime.now(UTC),
        )
