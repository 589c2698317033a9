"""Marketing's top-up promotion instructions (`marketing.topups`) posted to the holder's bonus sub-account.

Marketing decides which paid top-up earns a bonus and when a refund revokes it (services/marketing,
flows/topups.py); the money is posted here, platform-funded (docs/ledger.md §3.11):

- `topup.bonus_granted` → a `bonus_grant` operation, key `<payment>`: Dr 5201 marketing_expense, Cr 2308
  user_bonus (the sub-account is opened on the first bonus) and Cr the bonus's own lot (9106, Dr 9107:
  wallet/store/bonus.py), so spending can take the earliest expiry first;
- `topup.bonus_revoked` → a `bonus_revocation` operation, key `<payment>`: the lot ends and what is left of
  it returns, Dr 2308 + lot, Cr 5201 + 9107 (what the holder already spent of it stays spent; the platform
  bore it; a refund of that spending later gives it back to 5201); a grant from before lots has no lot and
  takes back the smaller of the bonus and the pool's available balance;
- `topup.bonus_expired` → a `bonus_expiry` operation, key `<payment>`, the same lines (marketing sends either a
  revocation or an expiry for a bonus, never both).

Both events of one top-up share its key on the topic (the payment id), so a grant is handled before its
revocation. Each operation is idempotent by kind + key (a redelivery replays it). What cannot be posted is
logged and skipped, never retried forever: a holder without a wallet, an entitlement refused by an override.
The bonus sub-account allows spending only: no withdrawal and no transfer entitlement exists for it."""

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
from services.ledger.wallet.store import bonus as lots
from services.ledger.wallet.store import wallet as store

log = get_logger("juhe.ledger.topups")

TOPUPS_TOPIC = "marketing.topups"
BONUS_GRANTED = "topup.bonus_granted"
BONUS_REVOKED = "topup.bonus_revoked"
BONUS_EXPIRED = "topup.bonus_expired"
PLATFORM = "platform"
REVOKE_ATTEMPTS = 3  # a spend between reading what is left and taking it back: read again
SKIPPED = frozenset(
    {
        wallet_errors.HOLDER_NOT_FOUND.code,
        wallet_errors.SUBACCOUNT_NOT_FOUND.code,
        wallet_errors.ENTITLEMENT_DENIED.code,
        wallet_errors.LIMIT_EXCEEDED.code,
    }
)


class TopupBonusPostings:
    def __init__(self, uow: UnitOfWork, writer: LedgerWriter) -> None:
        self.uow = uow
        self.writer = writer

    def subscriptions(self) -> list[Subscription]:
        kinds = frozenset({BONUS_GRANTED, BONUS_REVOKED, BONUS_EXPIRED})
        return [Subscription(TOPUPS_TOPIC, self.on_topup_event, kinds)]

    async def on_topup_event(self, tx: Tx, event: Envelope) -> None:
        data: dict[str, Any] = event.data
        if int(data.get("bonus_minor") or 0) <= 0:
            return
        try:
            if event.type == BONUS_GRANTED:
                await self.grant(data)
            else:
                await self.take_back(data, kind="bonus_revocation" if event.type == BONUS_REVOKED else "bonus_expiry")
        except (WalletError, LedgerError) as exc:
            if exc.spec.code not in SKIPPED:
                raise
            log.warning(
                "top-up bonus instruction not posted",
                event_type=event.type,
                code=exc.spec.code,
                payment_id=data.get("payment_id"),
                holder_id=data.get("holder_id"),
            )

    async def _accounts(self, holder_id: str, currency: str) -> tuple[str, str]:
        """(the holder's bonus sub-account, the platform's marketing expense), opened on first use."""
        async with self.uow.begin() as tx:
            await store.require_holder(tx.conn, holder_id)
            bonus = await store.open_subaccount(tx, holder_id, SubaccountType.BONUS, currency)
            expense = await store.shared_account(
                tx, holder_id=PLATFORM, entry=chart.MARKETING_EXPENSE, currency=currency
            )
        return bonus, expense

    async def grant(self, data: dict[str, Any]) -> None:
        """Dr 5201, Cr 2308 and the bonus's own lot (9106, Dr 9107) in one transfer: the lot is how spending
        picks the earliest expiry and how a revocation or an expiry takes back this bonus only."""
        holder_id, currency, amount = str(data["holder_id"]), str(data["currency"]), int(data["bonus_minor"])
        payment_id = str(data["payment_id"])
        bonus, expense = await self._accounts(holder_id, currency)
        async with self.uow.begin() as tx:
            lot = await lots.open_lot(
                tx, holder_id=holder_id, currency=currency, payment_id=payment_id, expires_at=data.get("expires_at")
            )
            usage = await lots.lot_usage(tx, currency)
        details = {
            "account_id": bonus,
            "promotion_id": data.get("promotion_id"),
            "expires_at": data.get("expires_at"),
            "topup_minor": data.get("topup_minor"),
            "lot_account_id": lot,
        }
        postings = [
            p.dr(expense, amount, currency),
            p.cr(bonus, amount, currency),
            *p.bonus_lot_memo(lots=[(lot, amount)], usage=usage, currency=currency, debit=False),
        ]
        await store.execute(
            self.uow,
            self.writer,
            store.Movement(
                holder_id,
                "bonus_grant",
                payment_id,
                amount,
                currency,
                postings,
                [(SubaccountType.BONUS, Action.TOP_UP)],
                reference=payment_id,
                details=details,
            ),
            now=datetime.now(UTC),
        )

    async def take_back(self, data: dict[str, Any], *, kind: str) -> None:
        """A revocation or an expiry: what is left of the bonus's lot returns to 5201 and the lot ends (store/
        wallet_bonus.py); a grant from before lots takes back min(bonus, pool), once per (kind, payment)."""
        holder_id, currency, payment_id = str(data["holder_id"]), str(data["currency"]), str(data["payment_id"])
        async with self.uow.read() as conn:
            grant = await store.operation_by_key(conn, "bonus_grant", payment_id)
            lot = await lots.get_lot(conn, holder_id, currency, payment_id)
            if grant is None:
                log.warning("bonus revoked that was never posted: nothing to take back", payment_id=payment_id)
                return
        if lot is not None:  # this bonus's own lot: what is left of it, whatever else the pool holds
            async with self.uow.begin() as tx:
                await lots.end_lot(tx, str(lot["id"]), kind)
            details = {"bonus_minor": int(data["bonus_minor"]), "refund_id": data.get("refund_id")}
            if not await lots.finish_lot(self.uow, self.writer, str(lot["id"]), details=details, now=datetime.now(UTC)):
                log.info(
                    "ended bonus lot not closed yet (a hold pending on it): the wallet round finishes it",
                    payment_id=payment_id,
                    lot_id=lot["id"],
                )
            return
        async with self.uow.read() as conn:
            if await store.operation_by_key(conn, kind, payment_id) is not None:
                return  # taken back before (a redelivery)
        bonus, expense = await self._accounts(holder_id, currency)
        for attempt in range(REVOKE_ATTEMPTS):
            take = min(int(data["bonus_minor"]), await self._unlotted(holder_id, bonus, currency))
            if take <= 0:
                log.info("revoked bonus already spent: nothing left to take back", payment_id=payment_id)
                return
            try:
                await store.execute(
                    self.uow,
                    self.writer,
                    store.Movement(
                        holder_id,
                        kind,
                        payment_id,
                        take,
                        currency,
                        [p.dr(bonus, take, currency), p.cr(expense, take, currency)],
                        [],
                        reference=payment_id,
                        details={
                            "account_id": bonus,
                            "bonus_minor": int(data["bonus_minor"]),
                            "refund_id": data.get("refund_id"),
                        },
                    ),
                    now=datetime.now(UTC),
                )
                return
            except LedgerError as exc:
                if exc.spec.code != ledger_errors.INSUFFICIENT_FUNDS.code or attempt == REVOKE_ATTEMPTS - 1:
                    raise

    async def _unlotted(self, holder_id: str, bonus: str, currency: str) -> int:
        """What the pool holds beyond its open lots: the grants from before lots, the most a grant without a lot
        may take back (the lots' money is their own bonuses')."""
        async with self.uow.read() as conn:
            pool = await store.available_minor(conn, bonus)
            in_lots = sum(max(int(lot["available"]), 0) for lot in await lots.open_lots(conn, holder_id, currency))
        return pool - in_lots
