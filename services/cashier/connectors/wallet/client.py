"""The wallet connector: the platform wallet as a channel whose institution is the ledger (docs/ledger.md).

A wallet payment is the §3.2 two-phase transfer: `prepay` holds the payer's balance (pending transfer
`pay_…:hold`, Dr user_wallet / Cr merchant_pending + platform_fee_income, timing out with the payment),
`confirm` posts it when the payer confirms, `close` voids it. `query` reads the hold's state, so the
cashier's polling, expiry and close paths work unchanged. Every call is idempotent at the ledger by
`(source, idempotency_key)`, so retries and concurrent confirms post once.

The ledger's own answers decide races: a confirm and an expiry of the same hold are serialised by the
ledger's row lock, and whichever lost sees `pending_transfer_already_posted|voided|expired`.

A payer with a top-up bonus (2308 `user_bonus`, docs/marketing.md) pays with the cash balance first and the bonus
for the rest, in the same hold; the bonus part also credits a per-payment memo (9104) that caps what refunds give
back to the bonus, and refunds give back to the bonus first, then to the cash.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import httpx

from libs.common import bonus_lots
from services.cashier.connectors.base import (
    Bill,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    Notification,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.http import channel_client
from services.cashier.connectors.wallet.models import (
    BONUS_LOT_KIND,
    SOURCE,
    USER_BONUS_KIND,
    USER_WALLET_KIND,
    WalletConfig,
    bonus_lot_usage,
    bonus_refund_shares,
    bonus_refundable,
    bonus_refundable_usage,
    hold_key,
    marketing_expense,
    merchant_pending,
    platform_fee_income,
    refund_fee_share,
    refund_key,
    spend_split,
)

HOLD_TIMEOUT_SECONDS_MIN = 1
ACCOUNTS_PAGE_MAX = 200
REFUND_ATTEMPTS = 3  # a concurrent refund took a bonus memo, or a bonus lot ended, between our read and post
ACCOUNT_PAGES_MAX = 20  # a payer's accounts: the wallet, the bonus pool and one lot per bonus ever granted
_REREAD = frozenset({"insufficient_funds", "account_closed"})
_TRADE_STATUS = {
    "pending": TradeStatus.PENDING,
    "posted": TradeStatus.SUCCEEDED,
    "voided": TradeStatus.CLOSED,
    "expired": TradeStatus.CLOSED,
}
# Ledger refusals a payer or merchant can act on; anything else 4xx is a refusal too, never a retry.
_RELEASED = frozenset({"pending_transfer_already_voided", "pending_transfer_expired"})


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class WalletConnector:
    channel = "wallet"

    def __init__(self, config: WalletConfig) -> None:
        self.config = config
        self._http = (
            channel_client(read_timeout_seconds=config.timeout_seconds, base_url=config.ledger_url.rstrip("/"))
            if config.ledger_url
            else None
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # --- HTTP to the ledger -----------------------------------------------------------------------------
    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._http is None:
            raise ChannelUnavailable("no ledger URL configured for wallet payments (JUHE_CASHIER_LEDGER_URL)")
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ChannelUnavailable(f"ledger unreachable: {exc!r}") from exc
        if response.status_code >= 500:
            raise ChannelUnavailable(f"ledger answered {response.status_code}")
        return response

    @staticmethod
    def _refusal(response: httpx.Response) -> ChannelError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = str(body.get("code") or f"ledger_{response.status_code}")
        return ChannelError(
            code,
            str(body.get("detail") or body.get("title") or code),
            retryable=False,
            http_status=response.status_code,
        )

    async def _account(self, body: dict[str, Any]) -> str:
        response = await self._call("POST", "/v1/accounts", json=body)
        if response.status_code not in (200, 201):
            raise self._refusal(response)
        return str(response.json()["id"])

    async def _payer_accounts(self, user_id: str, currency: str) -> tuple[dict[str, dict[str, Any]], list[Any]]:
        """The payer's open accounts in `currency`: by kind the cash balance `user_wallet` and the bonus pool,
        and the bonus lots (every page: a lot missed would count as the pool's unlotted rest)."""
        by_kind: dict[str, dict[str, Any]] = {}
        lots: list[Any] = []
        params: dict[str, Any] = {"holder_id": user_id, "limit": ACCOUNTS_PAGE_MAX}
        for _ in range(ACCOUNT_PAGES_MAX):
            response = await self._call("GET", "/v1/accounts", params=params)
            if response.status_code != 200:
                raise self._refusal(response)
            page = response.json()
            for a in page.get("data", []):
                if a["currency"] != currency or a["status"] == "closed":
                    continue
                if a["kind"] == BONUS_LOT_KIND:
                    lots.append({**a, "available": int(a["balances"]["available_balance_minor"])})
                elif a["kind"] in (USER_WALLET_KIND, USER_BONUS_KIND):
                    by_kind[str(a["kind"])] = a
            if not page.get("has_more"):
                return by_kind, lots
            params["cursor"] = page["next_cursor"]
        raise ChannelUnavailable(f"user {user_id} has more than {ACCOUNT_PAGES_MAX} pages of accounts")

    async def _available(self, account_id: str) -> int:
        response = await self._call("GET", f"/v1/accounts/{account_id}")
        if response.status_code != 200:
            raise self._refusal(response)
        return int(response.json()["balances"]["available_balance_minor"])

    async def _transfer(self, key: str) -> dict[str, Any] | None:
        response = await self._call("GET", "/v1/transfers", params={"source": SOURCE, "idempotency_key": key})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refusal(response)
        found: dict[str, Any] = response.json()
        return found

    async def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._call("POST", "/v1/transfers", json=body)
        if response.status_code not in (200, 201):
            raise self._refusal(response)
        created: dict[str, Any] = response.json()
        return created

    # --- the Connector interface ------------------------------------------------------------------------
    async def prepay(self, request: PrepayRequest) -> PrepayResult:
        if not request.payer_user_id or not request.merchant_id:
            raise ChannelError("payer_user_id_missing", "a wallet payment needs payer.user_id")
        accounts, lots = await self._payer_accounts(request.payer_user_id, request.currency)
        if USER_WALLET_KIND not in accounts:
            raise ChannelError("wallet_not_found", f"user {request.payer_user_id} has no {request.currency} wallet")
        wallet, bonus = accounts[USER_WALLET_KIND], accounts.get(USER_BONUS_KIND)
        bonus_available = int(bonus["balances"]["available_balance_minor"]) if bonus is not None else None
        from_cash, from_bonus = spend_split(
            request.amount_minor, int(wallet["balances"]["available_balance_minor"]), bonus_available
        )
        plan = bonus_lots.spend_plan(lots, bonus_available or 0, from_bonus) if from_bonus else []
        if plan is None:  # the live lots and the unlotted rest fall short: all from cash, which the ledger refuses
            from_cash, from_bonus, plan = request.amount_minor, 0, []
        fee = min(max(request.platform_fee_minor, 0), request.amount_minor)
        merchant = await self._account(merchant_pending(request.merchant_id, request.currency))
        fee_account = await self._account(platform_fee_income(request.currency)) if fee else None
        postings: list[dict[str, Any]] = [
            {"account_id": wallet["id"], "direction": "debit", "amount_minor": from_cash},
            {"account_id": merchant, "direction": "credit", "amount_minor": request.amount_minor - fee},
        ]
        if fee_account is not None:
            postings.append({"account_id": fee_account, "direction": "credit", "amount_minor": fee})
        used: dict[str, Any] = {"cash": wallet["id"], "merchant": merchant, "fee": fee_account}
        parts: list[dict[str, Any]] = []
        if from_bonus:
            assert bonus is not None
            postings[1:1] = [{"account_id": bonus["id"], "direction": "debit", "amount_minor": from_bonus}]
            usage = await self._account(bonus_refundable_usage(request.currency))
            lot_usage = await self._account(bonus_lot_usage(request.currency)) if plan else None
            unlotted = from_bonus - sum(n for _, n in plan)
            # Each part the payment spends (a lot, then the pool's unlotted rest) gets its own refundable memo.
            for lot, n in [*plan, *([(None, unlotted)] if unlotted else [])]:
                memo = await self._account(bonus_refundable(request.out_trade_no, request.currency, lot))
                postings += [
                    {"account_id": usage, "direction": "debit", "amount_minor": n},
                    {"account_id": memo, "direction": "credit", "amount_minor": n},
                ]
                if lot is not None:
                    postings += [
                        {"account_id": lot, "direction": "debit", "amount_minor": n},
                        {"account_id": lot_usage, "direction": "credit", "amount_minor": n},
                    ]
                parts.append({"lot": lot, "memo": memo, "minor": n})
            used |= {"bonus": bonus["id"], "bonus_refundable_usage": usage, "bonus_lot_usage": lot_usage}
        timeout_seconds = HOLD_TIMEOUT_SECONDS_MIN
        if request.expire_at is not None:
            remaining = (request.expire_at - datetime.now(UTC)).total_seconds()
            timeout_seconds = max(HOLD_TIMEOUT_SECONDS_MIN, math.ceil(remaining))
        hold = await self._create(
            {
                "source": SOURCE,
                "idempotency_key": hold_key(request.out_trade_no),
                "postings": [{**p, "currency": request.currency} for p in postings if int(p["amount_minor"]) > 0],
                "pending": True,
                "timeout_seconds": timeout_seconds,
                "reference": request.out_trade_no,
                "metadata": {
                    "merchant_id": request.merchant_id,
                    "user_id": request.payer_user_id,
                    "platform_fee_minor": fee,
                    "amount_minor": request.amount_minor,
                    "bonus_minor": from_bonus,
                    "bonus_parts": parts,
                    "accounts": used,
                },
            }
        )
        return PrepayResult(
            payer_action={
                "type": "wallet_confirm",
                "hold_transfer_id": hold["id"],
                "confirm_path": f"/v1/payments/{request.out_trade_no}/confirm",
            },
            channel_trade_no=str(hold["id"]),
        )

    async def confirm(self, out_trade_no: str) -> TradeQueryResult:
        """Posts the hold (the payer confirmed). Posting a posted hold again is a harmless replay."""
        hold = await self._transfer(hold_key(out_trade_no))
        if hold is None:
            raise ChannelError("hold_not_found", f"no wallet hold for {out_trade_no}")
        if hold["status"] == "pending":
            response = await self._call("POST", f"/v1/transfers/{hold['id']}/post")
            if response.status_code != 200:
                error = self._refusal(response)
                if error.code != "pending_transfer_already_posted":
                    raise error
            hold = await self._transfer(hold_key(out_trade_no)) or hold
        return self._trade(out_trade_no, hold)

    def _trade(self, out_trade_no: str, hold: dict[str, Any] | None) -> TradeQueryResult:
        if hold is None:
            return TradeQueryResult(TradeStatus.NOT_FOUND, out_trade_no)
        status = _TRADE_STATUS.get(hold["status"], TradeStatus.PENDING)
        amount = _hold_amount(hold)
        split = None
        if amount is not None and status is TradeStatus.SUCCEEDED:
            bonus = int((hold.get("metadata") or {}).get("bonus_minor") or 0)
            split = {"cash_minor": amount - bonus, "bonus_minor": bonus}
        return TradeQueryResult(
            wallet_split=split,
            status=status,
            out_trade_no=out_trade_no,
            channel_trade_no=str(hold["id"]),
            amount_minor=amount if amount is not None and status is TradeStatus.SUCCEEDED else None,
            paid_at=_parse_time(hold.get("finalized_at")) if status is TradeStatus.SUCCEEDED else None,
            detail=f"ledger hold {hold['status']}",
        )

    async def query(self, out_trade_no: str) -> TradeQueryResult:
        return self._trade(out_trade_no, await self._transfer(hold_key(out_trade_no)))

    async def close(self, out_trade_no: str) -> None:
        """Voids the hold: the payer's balance is whole again. Already released: nothing to do."""
        hold = await self._transfer(hold_key(out_trade_no))
        if hold is None or hold["status"] in ("voided", "expired"):
            return
        if hold["status"] == "posted":
            raise ChannelError("already_paid", "the payer confirmed; the hold is posted")
        response = await self._call("POST", f"/v1/transfers/{hold['id']}/void")
        if response.status_code != 200:
            error = self._refusal(response)
            if error.code not in _RELEASED:
                raise error

    async def refund(self, request: RefundRequest) -> RefundResult:
        """§3.3 wallet refund, posted at once: Dr merchant_pending, Dr platform fee (scaled, rounded down),
        Cr the payer: the bonus first, the last part spent first, each part up to what the payment took from it
        and earlier refunds did not give back (its 9104 memo, debited in the same transfer: the engine refuses a
        concurrent refund that would give back more, and this one then reads the memos again), then the cash.

        A part spent from a bonus lot that has ended since (its top-up refunded, or the bonus expired) is not
        the payer's any more: it goes back to the platform that funded it (Cr 5201), never to the payer's cash
        or bonus, so the platform does not pay that bonus twice. A lot ending between our read and the post is
        closed by then, so the engine refuses the credit to it and this reads again. The hold names the
        accounts and the parts."""
        existing = await self._transfer(refund_key(request.out_refund_no))
        if existing is not None:  # asked before (a retry, or the poll re-submitting): the same refund
            return self._refund(request.out_refund_no, request.out_trade_no, existing)
        hold = await self._transfer(hold_key(request.out_trade_no))
        if hold is None or hold["status"] != "posted":
            raise ChannelError("payment_not_posted", "the wallet payment was never posted")
        meta = hold.get("metadata") or {}
        accounts = _hold_accounts(hold)
        parts = _bonus_parts(hold, accounts)
        gross = _hold_amount(hold) or 0
        fee = refund_fee_share(int(meta.get("platform_fee_minor") or 0), request.refund_minor, gross)
        for attempt in range(REFUND_ATTEMPTS):
            shares = bonus_refund_shares(request.refund_minor, [await self._available(p["memo"]) for p in parts])
            postings: list[dict[str, Any]] = [
                {"account_id": accounts["merchant"], "direction": "debit", "amount_minor": request.refund_minor - fee},
                {"account_id": accounts.get("fee"), "direction": "debit", "amount_minor": fee},
                {
                    "account_id": accounts["cash"],
                    "direction": "credit",
                    "amount_minor": request.refund_minor - sum(shares),
                },
            ]
            to_bonus = to_platform = 0
            for part, n in zip(parts, shares, strict=True):
                if not n:
                    continue
                postings += [
                    {"account_id": part["memo"], "direction": "debit", "amount_minor": n},
                    {"account_id": accounts.get("bonus_refundable_usage"), "direction": "credit", "amount_minor": n},
                ]
                if part["lot"] is not None and not await self._lot_live(part["lot"]):
                    expense = await self._account(marketing_expense(request.currency))
                    postings.append({"account_id": expense, "direction": "credit", "amount_minor": n})
                    to_platform += n
                    continue
                postings.append({"account_id": accounts.get("bonus"), "direction": "credit", "amount_minor": n})
                to_bonus += n
                if part["lot"] is not None:
                    postings += [
                        {"account_id": part["lot"], "direction": "credit", "amount_minor": n},
                        {"account_id": accounts.get("bonus_lot_usage"), "direction": "debit", "amount_minor": n},
                    ]
            try:
                transfer = await self._create(
                    {
                        "source": SOURCE,
                        "idempotency_key": refund_key(request.out_refund_no),
                        "postings": [
                            {**p, "currency": request.currency}
                            for p in postings
                            if p["amount_minor"] > 0 and p["account_id"]
                        ],
                        "reference": request.out_refund_no,
                        "metadata": {
                            "payment_id": request.out_trade_no,
                            "refund_minor": request.refund_minor,
                            "bonus_minor": to_bonus,
                            "bonus_to_platform_minor": to_platform,
                        },
                    }
                )
            except ChannelError as exc:
                retry = exc.code in _REREAD and attempt < REFUND_ATTEMPTS - 1
                if exc.code == "idempotency_key_reused":  # a concurrent submit of this refund posted it first
                    return self._refund(
                        request.out_refund_no,
                        request.out_trade_no,
                        await self._transfer(refund_key(request.out_refund_no)),
                    )
                if not retry:
                    raise
                continue
            return self._refund(request.out_refund_no, request.out_trade_no, transfer)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def _lot_live(self, lot_id: str) -> bool:
        """Whether a bonus lot may still take back what a refund gives (neither ended nor closed)."""
        response = await self._call("GET", f"/v1/accounts/{lot_id}")
        if response.status_code != 200:
            raise self._refusal(response)
        return bonus_lots.is_live(response.json())

    def _refund(self, out_refund_no: str, out_trade_no: str, transfer: dict[str, Any] | None) -> RefundResult:
        if transfer is None:
            return RefundResult(RefundStatus.NOT_FOUND, out_refund_no, out_trade_no)
        credit = next(p for p in transfer["postings"] if p["direction"] == "credit")
        meta = transfer.get("metadata") or {}
        refund_minor = meta.get("refund_minor")
        amount = int(refund_minor) if refund_minor is not None else int(credit["amount_minor"])
        bonus, platform = int(meta.get("bonus_minor") or 0), int(meta.get("bonus_to_platform_minor") or 0)
        return RefundResult(
            wallet_split={"cash_minor": amount - bonus - platform, "bonus_minor": bonus, "platform_minor": platform},
            status=RefundStatus.SUCCEEDED,
            out_refund_no=out_refund_no,
            out_trade_no=out_trade_no,
            channel_refund_no=str(transfer["id"]),
            refund_minor=amount,
            succeeded_at=_parse_time(transfer.get("created_at")),
        )

    async def query_refund(self, out_refund_no: str, out_trade_no: str) -> RefundResult:
        return self._refund(out_refund_no, out_trade_no, await self._transfer(refund_key(out_refund_no)))

    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notification:
        raise InvalidSignature("the wallet sends no notifications: the cashier calls the ledger directly")

    async def download_bill(self, bill_date: date) -> Bill:
        """No channel bill: the ledger's statements are the record."""
        return Bill(bill_date=bill_date, lines=[])


def _hold_amount(hold: dict[str, Any]) -> int | None:
    """The payment's amount: recorded in the hold's metadata; a hold from before bonuses has one debit, the payer."""
    recorded = (hold.get("metadata") or {}).get("amount_minor")
    if recorded is not None:
        return int(recorded)
    debit = next((p for p in hold["postings"] if p["direction"] == "debit"), None)
    return int(debit["amount_minor"]) if debit is not None else None


def _bonus_parts(hold: dict[str, Any], accounts: dict[str, str | None]) -> list[dict[str, Any]]:
    """The bonus parts the payment spent, in its spending order: recorded in the hold's metadata; a hold from
    before bonus lots had one memo for its whole bonus part (the pool, no lot); a hold without bonus none."""
    meta = hold.get("metadata") or {}
    recorded = meta.get("bonus_parts")
    if isinstance(recorded, list):
        return [{"lot": p.get("lot"), "memo": str(p["memo"]), "minor": int(p["minor"])} for p in recorded]
    memo = accounts.get("bonus_refundable")
    return [{"lot": None, "memo": memo, "minor": int(meta.get("bonus_minor") or 0)}] if memo else []


def _hold_accounts(hold: dict[str, Any]) -> dict[str, str | None]:
    """The accounts a refund gives back to and takes from: recorded in the hold's metadata; a hold from before
    bonuses is read from its postings (the payer's one debit, then the merchant's and the fee's credits)."""
    recorded = (hold.get("metadata") or {}).get("accounts")
    if isinstance(recorded, dict):
        return {str(k): (str(v) if v else None) for k, v in recorded.items()}
    debit = next(p for p in hold["postings"] if p["direction"] == "debit")
    credits = [p for p in hold["postings"] if p["direction"] == "credit"]
    fee = credits[1]["account_id"] if len(credits) > 1 else None
    return {"cash": debit["account_id"], "merchant": credits[0]["account_id"], "fee": fee}
