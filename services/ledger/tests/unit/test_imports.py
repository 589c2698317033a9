"""The bulk import opens sub-accounts with exactly the body hash the wallet (and so `POST /v1/accounts`)
stores for them, computed from a body built once per type: a later opener of the same key must find the
account, not a conflict."""

from __future__ import annotations

from services.ledger.wallet.domain.entitlements import SubaccountType
from services.ledger.wallet.domain.postings import POINTS_CURRENCY, SUBACCOUNT_CHART
from services.ledger.wallet.store.imports import subaccount_body_hash
from services.ledger.wallet.store.wallet import chart_body


def test_subaccount_hash_is_the_wallets() -> None:
    for subaccount, entry in SUBACCOUNT_CHART.items():
        for currency in ("CNY", POINTS_CURRENCY):
            for holder_id in ("usr_1", "mig_platform_persons_P1"):
                metadata = {"wallet_subaccount": subaccount.value}
                want = chart_body(holder_id, currency, entry, 0, False, metadata).body_hash()
                assert subaccount_body_hash(holder_id, currency, subaccount) == want
    assert subaccount_body_hash("a", "CNY", SubaccountType.BALANCE) != subaccount_body_hash(
        "b", "CNY", SubaccountType.BALANCE
    )
