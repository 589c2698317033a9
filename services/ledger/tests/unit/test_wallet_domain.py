"""Wallet domain: document check characters (real numbers), KYC state machine, entitlements, postings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ledger.domain.transfers import validate_postings
from services.ledger.wallet.domain import entitlements as ent
from services.ledger.wallet.domain import kyc, postings, signing
from services.ledger.wallet.domain.entitlements import Action, HolderType, SubaccountType
from services.ledger.wallet.domain.errors import WalletError
from services.ledger.wallet.domain.kyc import KycStatus


@pytest.mark.parametrize(
    "number",
    ["11010519491231002X", "440308199901010012", "11010519491231002x"],  # GB 11643 standard example; lower x
)
def test_resident_id_with_right_check_character(number: str) -> None:
    assert kyc.check_resident_id(number) == number.upper()


@pytest.mark.parametrize(
    "number",
    [
        "110105194912310021",  # check character should be X
        "440308199901010013",  # should be 2
        "440308199902300012",  # 30 February
        "04030819990101001X",  # region cannot start with 0
        "4403081999010100",  # too short
        "44030819990101001A",
    ],
)
def test_resident_id_refused(number: str) -> None:
    with pytest.raises(WalletError) as e:
        kyc.check_resident_id(number)
    assert e.value.code == "invalid_resident_id"


def test_resident_id_check_character_is_the_gb11643_weighting() -> None:
    assert kyc.resident_id_check_char("11010519491231002") == "X"
    assert kyc.resident_id_check_char("44030819990101001") == "2"


@pytest.mark.parametrize(
    "code",
    ["9144030071526726XG", "91330100716105852F", "91110000600037341L", "91350100M000100Y43"],  # real companies
)
def test_credit_code_with_right_check_character(code: str) -> None:
    assert kyc.check_credit_code(code) == code


@pytest.mark.parametrize(
    "code",
    ["9144030071526726XA", "91330100716105852G", "91330100716105852", "9133010071610585IF", "91330100716105852OO"],
)
def test_credit_code_refused(code: str) -> None:
    with pytest.raises(WalletError) as e:
        kyc.check_credit_code(code)
    assert e.value.code == "invalid_credit_code"


def test_luhn() -> None:
    assert kyc.check_bank_card("4111 1111 1111 1111") == "4111111111111111"
    assert kyc.luhn_ok("79927398713")
    for bad in ("4111111111111112", "79927398710", "12345", "abcd111111111111"):
        with pytest.raises(WalletError) as e:
            kyc.check_bank_card(bad)
        assert e.value.code == "invalid_bank_card"


def test_phone() -> None:
    assert kyc.check_phone("+8613800138000") == "13800138000"
    with pytest.raises(WalletError):
        kyc.check_phone("12800138000")


def test_kyc_state_machine() -> None:
    assert kyc.submit(KycStatus.UNVERIFIED) is KycStatus.PENDING
    assert kyc.submit(KycStatus.REJECTED) is KycStatus.PENDING
    assert kyc.decide(KycStatus.PENDING, True) is KycStatus.VERIFIED
    assert kyc.decide(KycStatus.PENDING, False) is KycStatus.REJECTED
    for status in (KycStatus.PENDING, KycStatus.VERIFIED):
        with pytest.raises(WalletError):
            kyc.submit(status)
    with pytest.raises(WalletError):
        kyc.decide(KycStatus.VERIFIED, False)
    assert kyc.kyc_level(KycStatus.PENDING, has_bank_card=True) == 0
    assert kyc.kyc_level(KycStatus.VERIFIED, has_bank_card=False) == 1
    assert kyc.kyc_level(KycStatus.VERIFIED, has_bank_card=True) == 2


def test_levels_unlock_entitlements() -> None:
    def rule(level: int, sub: SubaccountType, action: Action) -> ent.Entitlement:
        return ent.effective({}, HolderType.PERSON, level, sub, action)

    assert not rule(0, SubaccountType.BALANCE, Action.WITHDRAW).allowed
    assert not rule(1, SubaccountType.BALANCE, Action.WITHDRAW).allowed
    assert rule(2, SubaccountType.BALANCE, Action.WITHDRAW).allowed
    assert not rule(0, SubaccountType.CREDIT, Action.SPEND).allowed
    assert rule(1, SubaccountType.CREDIT, Action.SPEND).allowed
    with pytest.raises(WalletError) as e:
        ent.check(rule(0, SubaccountType.BALANCE, Action.WITHDRAW), 1, what="withdraw")
    assert e.value.code == "entitlement_denied"
    limited = ent.Entitlement(True, single_limit_minor=100)
    ent.check(limited, 100, what="x")
    with pytest.raises(WalletError) as e:
        ent.check(limited, 101, what="x")
    assert e.value.code == "limit_exceeded"


def test_windows_follow_the_china_business_day() -> None:
    rule = ent.Entitlement(True, None, 10, 20)
    late_utc = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)  # 00:30 on 1 December in China
    assert [(w.period, w.label, w.limit_minor) for w in ent.windows(rule, late_utc)] == [
        ("day", "20261201", 10),
        ("month", "202612", 20),
    ]


def test_flow_postings_balance() -> None:
    validate_postings(
        postings.top_up(clearing="c", fee_expense="f", target="w", amount_minor=10000, fee_minor=6, currency="CNY")
    )
    w = postings.withdraw(wallet="w", escrow="e", fee_income="i", amount_minor=5000, fee_minor=10, currency="CNY")
    validate_postings(w)
    assert w[0].amount_minor == 5010
    validate_postings(
        postings.points_exchange(
            points="p", points_issued="pi", expense="x", wallet="w", points_count=500, value_minor=500, currency="CNY"
        )
    )
    assert postings.points_value_minor(250, 100) == 250


def test_callback_signature_known_vector() -> None:
    # HMAC-SHA256("secret", "1700000000.{}"), computed independently with openssl dgst -sha256 -hmac secret
    expected = "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
    assert signing.sign("secret", 1_700_000_000, b"{}") == expected
    assert signing.verify("secret", "1700000000", expected, b"{}", now=1_700_000_100, max_age_seconds=300)
    assert not signing.verify("secret", "1700000000", expected, b"{ }", now=1_700_000_100, max_age_seconds=300)
    assert not signing.verify("secret", "1700000000", expected, b"{}", now=1_700_000_400, max_age_seconds=300)
    assert not signing.verify("other", "1700000000", expected, b"{}", now=1_700_000_100, max_age_seconds=300)
