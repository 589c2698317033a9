"""KYC: identity-document check characters and the verification state machine.

Why validate check characters locally: a typo in a resident ID or credit code is caught before a paid call
to the identity provider, and the provider is only asked about documents that can exist.

    unverified ──submit──▶ pending ──provider approves──▶ verified
                              └────provider rejects──────▶ rejected ──submit again──▶ pending
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain.errors import WalletError

# GB 11643-1999 (citizen identification number): weights 2^(17-i) mod 11, check = map[Σ mod 11].
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^[1-9]\d{16}[\dX]$")

# GB 32100-2015 (unified social credit code): 31 characters (no I, O, Z, S, V), weights 3^i mod 31.
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_RE = re.compile(rf"^[{_USCC_CHARS}]{{18}}$")

_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")  # mainland mobile numbers
_CARD_RE = re.compile(r"^\d{12,19}$")  # ISO/IEC 7812 PAN length


def resident_id_check_char(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def check_resident_id(value: str) -> str:
    """18-character resident ID: digits, a real birth date and the GB 11643 check character."""
    number = value.strip().upper()
    if not _ID_RE.match(number):
        raise WalletError(errors.INVALID_RESIDENT_ID, "a resident ID has 17 digits and a check character")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise WalletError(errors.INVALID_RESIDENT_ID, "the birth date in the resident ID is not a date") from None
    if birth.year < 1900:
        raise WalletError(errors.INVALID_RESIDENT_ID, "the birth date in the resident ID is out of range")
    if resident_id_check_char(number[:17]) != number[17]:
        raise WalletError(errors.INVALID_RESIDENT_ID, "the resident ID check character is wrong")
    return number


def credit_code_check_char(first17: str) -> str:
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def check_credit_code(value: str) -> str:
    """18-character unified social credit code with the GB 32100 check character."""
    code = value.strip().upper()
    if not _USCC_RE.match(code):
        raise WalletError(errors.INVALID_CREDIT_CODE, "a unified social credit code has 18 characters of GB 32100")
    if credit_code_check_char(code[:17]) != code[17]:
        raise WalletError(errors.INVALID_CREDIT_CODE, "the unified social credit code check character is wrong")
    return code


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def check_bank_card(value: str) -> str:
    number = value.replace(" ", "")
    if not _CARD_RE.match(number) or not luhn_ok(number):
        raise WalletError(errors.INVALID_BANK_CARD, "the bank card number fails the Luhn check")
    return number


def check_phone(value: str) -> str:
    phone = value.strip().removeprefix("+86")
    if not _PHONE_RE.match(phone):
        raise WalletError(errors.INVALID_PHONE, "a mainland mobile number has 11 digits starting with 1")
    return phone


def mask(value: str, keep_start: int = 3, keep_end: int = 4) -> str:
    """Documents are shown masked everywhere outside the KYC record itself."""
    return value[:keep_start] + "*" * max(len(value) - keep_start - keep_end, 0) + value[-keep_end:]


class KycStatus(StrEnum):
    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


def submit(status: KycStatus) -> KycStatus:
    """Ask the provider: from unverified or rejected (a second try). Pending/verified: nothing to do."""
    if status in (KycStatus.UNVERIFIED, KycStatus.REJECTED):
        return KycStatus.PENDING
    raise WalletError(errors.KYC_STATE_INVALID, f"cannot submit a holder whose KYC is {status}")


def decide(status: KycStatus, approved: bool) -> KycStatus:
    """The provider's answer; only a pending verification takes one (a repeat is compared by the caller)."""
    if status is not KycStatus.PENDING:
        raise WalletError(errors.KYC_STATE_INVALID, f"no verification pending (KYC is {status})")
    return KycStatus.VERIFIED if approved else KycStatus.REJECTED


def kyc_level(status: KycStatus, *, has_bank_card: bool) -> int:
    """0: not verified (Class I-like: small top-ups and spending); 1: identity verified; 2: verified and a
    verified bank card bound (withdrawals possible). Entitlements are configured per level."""
    if status is not KycStatus.VERIFIED:
        return 0
    return 2 if has_bank_card else 1
