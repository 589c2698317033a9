"""The bulk import opens sub-accounts with exactly the body hash the wallet (and so `POST /v1/accounts`)
stores for them, computed from a body built once per type: a later opener of the same key must find the
account, not a conflict."""

from __future__ import annotations

from services.ledger.domain.wallet.entitlements import SubaccountType
from services.ledger.domain.wallet.postings import POINTS_CURRENCY, SUBACCOUNT_LINES
from services.ledger.store.imports import subaccount_body_hash
from services.ledger.store.wallet import _api_body_hash


def test_subaccount_hash_is_the_wallets() -> None:
    for subaccount, line in SUBACCOUNT_LINES.items():
        for currency in ("CNY", POINTS_CURRENCY):
            for holder_id in ("usr_1", "mig_platform_persons_P1"):
                metadata = {"wallet_subaccount": subaccount.value}
                want = _api_body_hash(holder_id, currency, line, 0, False, metadata)
                assert subaccount_body_hash(holder_id, currency, subaccount) == want
    assert subaccount_body_hash("a", "CNY", SubaccountType.BALANCE) != subaccount_body_hash(
        "b", "CNY", SubaccountType.BALANCE
    )
