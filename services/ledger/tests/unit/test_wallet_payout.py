"""A withdrawal's payout rail and payee (wallet/domain/payout.py): the `details.payout` settlement reads, and
every refusal with its stable code."""

from __future__ import annotations

from typing import Any

import pytest

from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.domain.payout import payout_details

HOLDER = "张三"
ALIPAY_ID = "2088102177890001"


def test_bank_rail_has_no_payout_so_settlement_pays_the_bound_card() -> None:
    assert payout_details("bank", None, HOLDER) is None
    assert payout_details("bank", {}, HOLDER) is None


def test_wechat_change_pays_the_openid_under_the_holders_verified_name() -> None:
    assert payout_details("wechat_change", {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, HOLDER) == {
        "rail": "wechat_change",
        "payee": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "payee_type": "openid",
        "payee_name": HOLDER,
    }
    named = payout_details("wechat_change", {"openid": "o_1", "user_name": HOLDER}, HOLDER)
    assert named is not None and named["payee_name"] == HOLDER


def test_alipay_account_pays_the_user_id() -> None:
    for payee in ({"identity": ALIPAY_ID}, {"identity": ALIPAY_ID, "identity_type": "ALIPAY_USER_ID", "name": HOLDER}):
        assert payout_details("alipay_account", payee, HOLDER) == {
            "rail": "alipay_account",
            "payee": ALIPAY_ID,
            "payee_type": "ALIPAY_USER_ID",
            "payee_name": HOLDER,
        }


@pytest.mark.parametrize(
    ("rail", "payee", "code"),
    [
        ("bank", {"openid": "o_1"}, "payee_invalid"),
        ("wechat_change", None, "payee_required"),
        ("alipay_account", {}, "payee_required"),
        ("wechat_change", {"identity": ALIPAY_ID}, "payee_invalid"),
        ("alipay_account", {"openid": "o_1"}, "payee_invalid"),
        ("wechat_change", {"openid": "o 1"}, "payee_invalid"),
        ("wechat_change", {"openid": "o" * 129}, "payee_invalid"),
        ("alipay_account", {"identity": "2088123"}, "payee_invalid"),
        (
            "alipay_account",
            {"identity": "13800138000", "identity_type": "ALIPAY_LOGON_ID", "name": HOLDER},
            "payee_identity_type_unsupported",
        ),
        ("alipay_account", {"identity": ALIPAY_ID, "identity_type": "BANKCARD_ACCOUNT"}, "payee_invalid"),
        ("wechat_change", {"openid": "o_1", "user_name": "李四"}, "payee_name_mismatch"),
        ("alipay_account", {"identity": ALIPAY_ID, "name": "李四"}, "payee_name_mismatch"),
        ("paypal", {"openid": "o_1"}, "payee_invalid"),
    ],
)
def test_refusals_have_stable_codes(rail: str, payee: dict[str, Any] | None, code: str) -> None:
    with pytest.raises(WalletError) as refused:
        payout_details(rail, payee, HOLDER)
    assert refused.value.code == code and refused.value.spec.status == 422
