"""The bank: clients, accounts, payouts, their asynchronous outcome and the daily statement.

A payout is `PROCESSING` when accepted; after `process_seconds` the bank decides from the beneficiary
account it knows: unknown → `ACCOUNT_NOT_FOUND`, name differs → `ACCOUNT_NAME_MISMATCH`, closed →
`ACCOUNT_CLOSED`, an account in `timeout` mode → never decided (stays `PROCESSING` until the control API
completes it), else `SUCCEEDED`. Each final outcome is sent as a signed callback and listed in the
statement of the day it finished (China time).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta, timezone

from sandboxes.bank.crypto import sign
from sandboxes.bank.settings import BankSettings
from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.store import Document, DocumentStore

CHINA = timezone(timedelta(hours=8))
CLIENTS, ACCOUNTS, PAYOUTS = "clients", "accounts", "payouts"
FAILURE_CODES = frozenset({"ACCOUNT_NOT_FOUND", "ACCOUNT_NAME_MISMATCH", "ACCOUNT_CLOSED", "BANK_REJECTED"})


class BankError(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Bank:
    def __init__(self, settings: BankSettings, store: DocumentStore, dispatcher: NotificationDispatcher) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self._timers: set[asyncio.TimerHandle] = set()

    # ------------------------------------------------------------------ control
    def register_client(self, client_id: str | None, secret: str | None = None) -> Document:
        """A client once; registering it again returns the first registration (its secret is kept)."""
        client = {"client_id": client_id or f"cli_{uuid.uuid4().hex[:12]}", "secret": secret or secrets.token_hex(32)}
        if not self.store.insert_if_absent(CLIENTS, client["client_id"], client):
            existing = self.store.get(CLIENTS, client["client_id"])
            assert existing is not None
            return existing
        return client

    def secret_of(self, client_id: str) -> str | None:
        client = self.store.get(CLIENTS, client_id)
        return None if client is None else str(client["secret"])

    def put_account(self, account: Document) -> Document:
        self.store.put(ACCOUNTS, account["account_no"], account)
        return account

    # ------------------------------------------------------------------ payouts
    def create_payout(self, client_id: str, body: Document) -> tuple[Document, bool]:
        """Accept a payout (PROCESSING); the same payout_no and body again → the same payout, another body
        → PAYOUT_NO_USED. Returns (payout, created)."""
        key = f"{client_id}:{body['payout_no']}"
        request = {
            k: body.get(k)
            for k in ("payout_no", "amount_minor", "currency", "account_no", "account_name", "notify_url", "memo")
        }
        payout = {
            **request,
            "client_id": client_id,
            "bank_ref": f"B{uuid.uuid4().hex[:20].upper()}",
            "status": "PROCESSING",
            "failure_code": None,
            "created_at": _now(),
            "finished_at": None,
            "request": request,
        }
        if self.store.insert_if_absent(PAYOUTS, key, payout):
            self._schedule_decision(key)
            return payout, True
        existing = self.store.get(PAYOUTS, key)
        assert existing is not None
        if existing["request"] != request:
            raise BankError(409, "PAYOUT_NO_USED", "payout_no was used with another request")
        return existing, False

    def get_payout(self, client_id: str, payout_no: str) -> Document:
        payout = self.store.get(PAYOUTS, f"{client_id}:{payout_no}")
        if payout is None:
            raise BankError(404, "PAYOUT_NOT_FOUND", f"no payout {payout_no}")
        return payout

    def _schedule_decision(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        handle = loop.call_later(max(self.settings.process_seconds, 0.0), lambda: self.decide(key))
        self._timers.add(handle)

    def decide(self, key: str) -> None:
        payout = self.store.get(PAYOUTS, key)
        if payout is None or payout["status"] != "PROCESSING":
            return
        account = self.store.get(ACCOUNTS, payout["account_no"])
        if account is not None and account.get("mode") == "timeout":
            return  # the bank never answers: only the control API or a status query after completion tells
        if account is None:
            self.finish(key, "FAILED", "ACCOUNT_NOT_FOUND")
        elif account.get("status") == "closed":
            self.finish(key, "FAILED", "ACCOUNT_CLOSED")
        elif account.get("account_name") != payout["account_name"]:
            self.finish(key, "FAILED", "ACCOUNT_NAME_MISMATCH")
        else:
            self.finish(key, "SUCCEEDED", None)

    def finish(self, key: str, status: str, failure_code: str | None) -> Document:
        """PROCESSING → SUCCEEDED | FAILED once; a final payout never changes again."""

        def change(doc: Document) -> Document:
            if doc["status"] != "PROCESSING":
                raise BankError(409, "PAYOUT_FINAL", f"payout is already {doc['status']}")
            return {**doc, "status": status, "failure_code": failure_code, "finished_at": _now()}

        payout = self.store.update(PAYOUTS, key, change)
        self._notify(payout)
        return payout

    def _notify(self, payout: Document) -> None:
        url = payout.get("notify_url")
        secret = self.secret_of(payout["client_id"])
        if not url or secret is None:
            return
        body = json.dumps({"event": "payout.finished", **self.view(payout)}, separators=(",", ":")).encode()

        def build() -> tuple[dict[str, str], bytes]:
            return {"Content-Type": "application/json", "X-Bank-Signature": sign(secret, body)}, body

        self.dispatcher.submit(
            NotificationJob(
                event_id=f"{payout['bank_ref']}:{payout['status']}",
                url=url,
                build=build,
                event_type="payout.finished",
                subject=payout["payout_no"],
            )
        )

    @staticmethod
    def view(payout: Document) -> Document:
        return {
            k: payout[k]
            for k in (
                "payout_no",
                "bank_ref",
                "amount_minor",
                "currency",
                "account_no",
                "status",
                "failure_code",
                "created_at",
                "finished_at",
            )
        }

    def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
