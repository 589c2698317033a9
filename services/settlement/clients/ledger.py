"""The ledger, as settlement sees it: find (or open) the accounts of docs/ledger.md §2, post transfers.

Settlement never imports the ledger; it speaks its HTTP API (services/ledger/README.md). Every account is found
in one book (`livemode`, docs/ledger.md §2.1): test money's settlement moves the test twins of the accounts, and
the ledger refuses a transfer that mixes books.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from libs.common.errors import Problem
from libs.common.http import request_with_retries, service_client
from services.settlement.domain.errors import LEDGER_UNAVAILABLE

SOURCE = "settlement"
ACCOUNT_PAGE_SIZE = 100
ACCOUNT_PAGES_MAX = 20

# Accounts are named by kind: the ledger takes the code from its chart of accounts (docs/ledger.md §2).
NO_OVERDRAFT_KINDS = frozenset({"merchant_settled", "merchant_payable"})
# Accounts the ledger's own consumer of cashier events opens by a chart key (services/ledger/events/postings.py,
# `chart:<kind>:<holder>:<currency>`, no flags, empty metadata): settlement opens them with that same key and
# body, so whichever service comes first, a holder has one merchant_pending (before: a race gave two).
CHART_KINDS = frozenset({"merchant_pending", "platform_fee_income"})


class LedgerRefused(Exception):
    """The ledger answered 4xx with a problem: retrying the same request cannot help."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status_code} {body.get('code')}: {body.get('detail')}")
        self.status_code = status_code
        self.code = str(body.get("code", ""))
        self.body = body


class AccountMirror(Protocol):
    """Where the client looks for an account before asking the ledger: settlement's mirror of `account.opened`
    (services/settlement/store/ledger_accounts.py), passed in so the client imports no store."""

    async def account_id(self, holder_id: str, kind: str, currency: str, *, livemode: bool) -> str | None: ...


@dataclass
class LedgerClient:
    http: httpx.AsyncClient
    mirror: AccountMirror

    @classmethod
    def build(cls, base_url: str, mirror: AccountMirror, *, timeout_seconds: float) -> LedgerClient:
        return cls(service_client(base_url, timeout_seconds=timeout_seconds), mirror)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await request_with_retries(self.http, method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise Problem(LEDGER_UNAVAILABLE, f"ledger: {exc!r}") from exc
        if response.status_code >= 500:
            raise Problem(LEDGER_UNAVAILABLE, f"ledger answered {response.status_code}")
        body: dict[str, Any] = response.json()
        if response.status_code >= 400:
            raise LedgerRefused(response.status_code, body)
        return body

    async def account_id(self, holder_id: str, kind: str, currency: str, *, livemode: bool = True) -> str:
        """The one account of (holder, kind, currency) in the book `livemode`: from settlement's mirror of
        `account.opened`, else the ledger's list of the holder's accounts in that book, else opened there with a
        key derived from the triple (so two settlement replicas open it once)."""
        found = await self.mirror.account_id(holder_id, kind, currency, livemode=livemode)
        if found:
            return found
        async for account in self.accounts_of(holder_id, livemode=livemode):
            if account["kind"] == kind and account["currency"] == currency:
                return str(account["id"])
        body: dict[str, Any] = {"holder_id": holder_id, "currency": currency, "kind": kind, "livemode": livemode}
        if kind in CHART_KINDS:  # the very key and body of the ledger's consumer: both open ONE account
            body.update(metadata={}, idempotency_key=f"chart:{kind}:{holder_id}:{currency}")
        else:
            body.update(
                flags={
                    "debits_must_not_exceed_credits": kind in NO_OVERDRAFT_KINDS,
                    "credits_must_not_exceed_debits": kind == "escrow_bank",
                },
                idempotency_key=f"account:{holder_id}:{kind}:{currency}",
            )
        key = body["idempotency_key"]
        opened = await self._call(
            "POST", "/v1/accounts", json=body, headers={"Idempotency-Key": key if livemode else f"{key}:test"}
        )
        return str(opened["id"])

    async def accounts_of(self, holder_id: str, *, livemode: bool | None = True) -> AsyncIterator[dict[str, Any]]:
        """Every account of a holder in one book of the ledger (both with `livemode=None`, each account marked),
        with its balances, page by page."""
        cursor: str | None = None
        for _ in range(ACCOUNT_PAGES_MAX):
            params: dict[str, Any] = {"holder_id": holder_id, "limit": ACCOUNT_PAGE_SIZE}
            if livemode is not None:
                params["livemode"] = livemode
            if cursor:
                params["cursor"] = cursor
            page = await self._call("GET", "/v1/accounts", params=params)
            for account in page.get("data", []):
                yield account
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def posted_balances(self, holder_id: str, kind: str) -> dict[tuple[str, bool], int]:
        """(currency, livemode) → posted balance of the holder's accounts of `kind`, per book (holds not
        counted); one listing of both books."""
        found: dict[tuple[str, bool], int] = {}
        async for account in self.accounts_of(holder_id, livemode=None):
            if account["kind"] == kind:
                key = (str(account["currency"]), account.get("livemode") is not False)
                found[key] = found.get(key, 0) + int(account["balances"]["posted_balance_minor"])
        return found

    async def post_transfer(
        self,
        *,
        idempotency_key: str,
        postings: list[dict[str, Any]],
        reference: str | None = None,
        metadata: dict[str, Any] | None = None,
        corrects_transfer_id: str | None = None,
        pending: bool = False,
    ) -> dict[str, Any]:
        """Create a transfer (posted, or a hold with `pending`); a repeat of the same key answers the original."""
        body: dict[str, Any] = {
            "source": SOURCE,
            "idempotency_key": idempotency_key,
            "postings": postings,
            "reference": reference,
            "metadata": metadata or {},
            "pending": pending,
        }
        if corrects_transfer_id:
            body["corrects_transfer_id"] = corrects_transfer_id
        return await self._call("POST", "/v1/transfers", json=body, headers={"Idempotency-Key": idempotency_key})

    async def find_transfer(self, idempotency_key: str) -> dict[str, Any] | None:
        """Settlement's transfer for a key, if the ledger has one (e.g. a hold whose answer we never stored)."""
        try:
            return await self._call(
                "GET", "/v1/transfers", params={"source": SOURCE, "idempotency_key": idempotency_key}
            )
        except LedgerRefused as exc:
            if exc.code == "transfer_not_found":
                return None
            raise

    async def post_hold(self, transfer_id: str) -> dict[str, Any]:
        """Post a hold in full; posting it again is a harmless replay in the ledger."""
        return await self._call(
            "POST", f"/v1/transfers/{transfer_id}/post", json={}, headers={"Idempotency-Key": f"{transfer_id}:post"}
        )

    async def void_hold(self, transfer_id: str) -> dict[str, Any]:
        return await self._call(
            "POST", f"/v1/transfers/{transfer_id}/void", json={}, headers={"Idempotency-Key": f"{transfer_id}:void"}
        )

    async def balance(self, account_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/accounts/{account_id}")

    async def wallet_operation(self, operation_id: str) -> dict[str, Any]:
        """A wallet operation with its details (a withdrawal's `details.bank_card`, docs/contracts.md §3)."""
        return await self._call("GET", f"/v1/wallet/operations/{operation_id}")

    async def finish_wallet_operation(self, operation_id: str, *, post: bool) -> dict[str, Any]:
        """Post (paid) or void (not paid) a wallet hold; the same call again answers the same status."""
        action = "post" if post else "void"
        return await self._call(
            "POST",
            f"/v1/wallet/operations/{operation_id}/{action}",
            json={},
            headers={"Idempotency-Key": f"{operation_id}:{action}"},
        )

    async def channel_account_id(self, kind: str, channel: str, currency: str, *, livemode: bool = True) -> str:
        """The platform's account of a channel (e.g. channel_clearing[wechatpay]), opened — or found, the
        same key and body answering the same account — exactly as the ledger's own consumer of cashier
        events opens it (docs/ledger.md §3: key `chart:<kind>:platform:<currency>:<channel>`), so both
        always name one account."""
        key = f"chart:{kind}:platform:{currency}:{channel}"
        opened = await self._call(
            "POST",
            "/v1/accounts",
            json={
                "holder_id": "platform",
                "currency": currency,
                "kind": kind,  # the ledger takes the code from its chart (services/ledger/domain/chart.py)
                "metadata": {"channel": channel},
                "idempotency_key": key,
                "livemode": livemode,
            },
            headers={"Idempotency-Key": key if livemode else f"{key}:test"},
        )
        return str(opened["id"])
