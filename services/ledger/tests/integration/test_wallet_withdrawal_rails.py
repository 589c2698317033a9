"""Withdrawals on a payout rail through the ledger's API (the real ledger server, PostgreSQL and identity
sandbox): `rail` + `payee` become the operation's `details.payout` that settlement pays to, a refused payee
holds nothing, the payout is part of the idempotent body, and an adopted orphan hold keeps its rail."""

from __future__ import annotations

from functools import partial
from typing import Any

from libs.common.testing.waiting import eventually
from services.ledger.tests.integration.test_wallet_events import funded_person, wait_events
from services.ledger.tests.integration.wallet_harness import Wallet, problem, running_wallet

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
ALIPAY_ID = "2088102177890001"
NAME = "张三"  # the harness's verified holders


async def available(wallet: Wallet, holder_id: str) -> int:
    view = await wallet.my_wallet(holder_id)
    return int(view["totals"]["CNY"]["available_balance_minor"])


async def test_withdrawal_rails_payees_and_their_refusals(identity, migrated_database, service_settings) -> None:  # type: ignore[no-untyped-def]
    async for wallet in running_wallet(identity, migrated_database, service_settings, wallet_orphan_after_seconds=0.3):
        holder_id = await funded_person(wallet)
        path = f"/v1/wallet/holders/{holder_id}/withdrawals"
        before = await available(wallet, holder_id)
        refused: list[tuple[dict[str, Any], int, str]] = [
            ({"rail": "wechat_change"}, 422, "payee_required"),
            ({"rail": "alipay_account", "payee": {"openid": OPENID}}, 422, "payee_invalid"),
            ({"rail": "bank", "payee": {"openid": OPENID}}, 422, "payee_invalid"),
            ({"rail": "wechat_change", "payee": {"openid": "not an openid"}}, 422, "payee_invalid"),
            ({"rail": "alipay_account", "payee": {"identity": "2088"}}, 422, "payee_invalid"),
            (
                {
                    "rail": "alipay_account",
                    "payee": {"identity": "u@example.com", "identity_type": "ALIPAY_LOGON_ID", "name": NAME},
                },
                422,
                "payee_identity_type_unsupported",
            ),
            ({"rail": "wechat_change", "payee": {"openid": OPENID, "user_name": "李四"}}, 422, "payee_name_mismatch"),
            ({"rail": "paypal", "payee": {"openid": OPENID}}, 422, "validation_failed"),
            ({"rail": "wechat_change", "payee": {"openid": OPENID, "iban": "x"}}, 422, "validation_failed"),
        ]
        for extra, status, code in refused:
            body = {"withdrawal_id": "wd_refused", "amount_minor": 1_000, "fee_minor": 10, **extra}
            problem(await wallet.client.post(path, json=body), status, code)
        assert await available(wallet, holder_id) == before  # nothing held
        assert await wallet.sql("SELECT id FROM wallet_operations WHERE idempotency_key = 'wd_refused'") == []

        body = {
            "withdrawal_id": "wd_wechat",
            "amount_minor": 1_000,
            "fee_minor": 10,
            "rail": "wechat_change",
            "payee": {"openid": OPENID},
        }
        created = await wallet.client.post(path, json=body)
        assert created.status_code == 201, created.text
        payout = {"rail": "wechat_change", "payee": OPENID, "payee_type": "openid", "payee_name": NAME}
        assert created.json()["details"]["payout"] == payout
        assert await available(wallet, holder_id) == before - 1_010  # held like a bank withdrawal
        again = await wallet.client.post(path, json={**body, "payee": {"openid": OPENID, "user_name": NAME}})
        assert again.status_code == 200 and again.json()["id"] == created.json()["id"], again.text
        other_rail = {**body, "rail": "alipay_account", "payee": {"identity": ALIPAY_ID}}
        problem(await wallet.client.post(path, json=other_rail), 409, "idempotency_key_reused")
        bank = await wallet.client.post(path, json={"withdrawal_id": "wd_bank", "amount_minor": 500, "fee_minor": 10})
        assert bank.status_code == 201 and "payout" not in bank.json()["details"], bank.text

        # The request dies between the hold and its operation: the reconciler's operation keeps the rail.
        alipay = {"identity": ALIPAY_ID, "identity_type": "ALIPAY_USER_ID"}
        body = {
            "withdrawal_id": "wd_alipay_orphan",
            "amount_minor": 2_000,
            "fee_minor": 10,
            "rail": "alipay_account",
            "payee": alipay,
        }
        lost = (await wallet.client.post(path, json=body)).json()
        await wallet.execute("DELETE FROM outbox WHERE key = :k", k=lost["id"])
        await wallet.execute("DELETE FROM wallet_operations WHERE id = :k", k=lost["id"])
        adopted = "SELECT * FROM wallet_operations WHERE idempotency_key = 'wd_alipay_orphan'"
        [row] = await eventually(partial(wallet.sql, adopted), "the orphan hold adopted")
        assert row["details"]["payout"] == {
            "rail": "alipay_account",
            "payee": ALIPAY_ID,
            "payee_type": "ALIPAY_USER_ID",
            "payee_name": NAME,
        }
        [event] = await wait_events(wallet, row["id"], 1)
        assert event["type"] == "withdrawal.requested"
        retried = await wallet.client.post(path, json=body)
        assert retried.status_code == 200 and retried.json()["id"] == row["id"], retried.text
