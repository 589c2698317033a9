"""Source rows: the three documented schemas (docs/migration/), their checks and Juhe's ids for them.

Pure: a row is a `dict[str, str | int | None]` as read from CSV or JSONL; `parse_*` returns the typed row or
raises `RowRejected` with a stable reason (domain/errors.py). Checks that need other rows (duplicates,
references) are the flow's, against the run's own records.

Why the checksums are implemented here and not imported from the ledger: services share no code (import
contract), and the migration must reject a bad document before anything reaches the ledger (which checks
again, as the authority).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from services.migration.domain import errors as e

SOURCE_ID_LENGTH_MAX = 64
NAME_LENGTH_MAX = 100  # the ledger's holder name limit
AMOUNT_MINOR_MAX = 2**62  # far above any real balance; keeps every sum inside a bigint
POINTS_CURRENCY = "XXX"  # ISO 4217 "no currency": one unit is one point (the ledger's convention)
CURRENCIES = frozenset({"CNY", "HKD", "USD", POINTS_CURRENCY})

_SOURCE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_RESIDENT_ID_RE = re.compile(r"^[1-9]\d{16}[\dX]$")
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_RE = re.compile(rf"^[{_USCC_CHARS}]{{18}}$")
_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
_CARD_RE = re.compile(r"^\d{12,19}$")
_ACCOUNT_RE = re.compile(r"^\d{8,32}$")
_AMOUNT_RE = re.compile(r"^-?\d{1,19}$")


class Kind(StrEnum):
    """The files of a migration, in the order a run reads them (later kinds refer to earlier ones)."""

    MERCHANTS = "merchants"
    PERSONS = "persons"
    BALANCES = "balances"
    COUPONS = "coupons"  # unused coupons of the platform's users (into marketing)


KIND_ORDER = (Kind.MERCHANTS, Kind.PERSONS, Kind.BALANCES, Kind.COUPONS)
COUPON_CURRENCIES = frozenset({"CNY", "HKD", "USD"})
_COUPON_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")


class Subaccount(StrEnum):
    BALANCE = "balance"
    PREPAID = "prepaid"  # a prepaid card issued by a merchant: needs merchant_source_id
    POINTS = "points"  # currency XXX
    CREDIT = "credit"  # a credit line (BNPL): amount_minor = what is owed, credit_limit_minor = the line


class RowRejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MerchantRow:
    source_id: str
    name: str
    credit_code: str
    legal_person: str
    settlement_account: str
    industry: str | None
    phone: str | None
    channel_ids: dict[str, str]  # channel sub-merchant ids (wechatpay_sub_mchid, alipay_smid): kept in the map

    @property
    def document_key(self) -> str:
        return self.credit_code


@dataclass(frozen=True, slots=True)
class PersonRow:
    source_id: str
    name: str
    resident_id: str
    phone: str
    kyc_level: int  # 0 unverified, 1 verified, 2 verified with a bank card (as verified at the source)
    bank_card: str | None

    @property
    def document_key(self) -> str:
        return self.resident_id


@dataclass(frozen=True, slots=True)
class BalanceRow:
    source_id: str
    person_source_id: str
    subaccount: Subaccount
    amount_minor: int
    currency: str
    merchant_source_id: str | None
    credit_limit_minor: int | None = None  # credit rows only: the line, at least what is owed

    @property
    def document_key(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CouponRow:
    """An unused coupon the person holds at the source: a fixed amount off (face value) from a threshold,
    valid in a window, for one merchant (`merchant_source_id`) or anywhere; the user's code is kept."""

    source_id: str
    person_source_id: str
    code: str
    face_value_minor: int
    currency: str
    threshold_minor: int
    valid_from: datetime
    valid_until: datetime
    merchant_source_id: str | None

    @property
    def document_key(self) -> None:
        return None


Row = MerchantRow | PersonRow | BalanceRow | CouponRow


# --- check characters --------------------------------------------------------------------------------
def iso7064_mod11_2(digits: str) -> str:
    """ISO 7064 MOD 11-2 check character of a digit string (GB 11643 resident IDs use it): the value that
    makes Σ dᵢ·2^(n-i) ≡ 1 (mod 11) over the string and the check character, 10 written as X."""
    total = 0
    for c in digits:
        total = (total + int(c)) * 2 % 11
    check = (12 - total) % 11
    return "X" if check == 10 else str(check)


def resident_id_ok(value: str) -> bool:
    if not _RESIDENT_ID_RE.match(value):
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return born.year >= 1900 and iso7064_mod11_2(value[:17]) == value[17]


def credit_code_ok(value: str) -> bool:
    """GB 32100 unified social credit code: weights 3^i mod 31 over the first 17, check = (31 - Σ mod 31)."""
    if not _USCC_RE.match(value):
        return False
    total = sum(_USCC_CHARS.index(c) * pow(3, i, 31) for i, c in enumerate(value[:17]))
    return _USCC_CHARS[(31 - total % 31) % 31] == value[17]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


# --- field helpers -----------------------------------------------------------------------------------
def _text(raw: dict[str, Any], name: str, *, required: bool = True, length_max: int = NAME_LENGTH_MAX) -> str | None:
    value = raw.get(name)
    value = "" if value is None else str(value).strip()
    if not value:
        if required:
            raise RowRejected(e.MISSING_FIELD, f"{name} is missing")
        return None
    if len(value) > length_max or not value.isprintable():
        raise RowRejected(e.BAD_FIELD, f"{name} is too long or has control characters")
    return value


def _required(raw: dict[str, Any], name: str, length_max: int = NAME_LENGTH_MAX) -> str:
    value = _text(raw, name, length_max=length_max)
    assert value is not None
    return value


def source_id_of(raw: dict[str, Any], name: str = "source_id") -> str:
    value = _required(raw, name, SOURCE_ID_LENGTH_MAX)
    if not _SOURCE_ID_RE.match(value):
        raise RowRejected(e.BAD_FIELD, f"{name} may hold letters, digits and _.:- only")
    return value


def _phone(value: str) -> str:
    phone = value.replace(" ", "").removeprefix("+86")
    if not _PHONE_RE.match(phone):
        raise RowRejected(e.BAD_PHONE, "a mainland mobile number has 11 digits starting with 1")
    return phone


# --- the three schemas -------------------------------------------------------------------------------
def parse_merchant(raw: dict[str, Any]) -> MerchantRow:
    source_id = source_id_of(raw)
    code = _required(raw, "credit_code", 18).upper()
    if not credit_code_ok(code):
        raise RowRejected(e.BAD_CREDIT_CODE, "the unified social credit code check character is wrong")
    account = _required(raw, "settlement_account", 40).replace(" ", "")
    if not _ACCOUNT_RE.match(account):
        raise RowRejected(e.BAD_FIELD, "settlement_account is a bank account number of 8-32 digits")
    phone = _text(raw, "phone", required=False, length_max=20)
    channel_ids = {
        name: value
        for name in ("wechatpay_sub_mchid", "alipay_smid")
        if (value := _text(raw, name, required=False, length_max=64))
    }
    return MerchantRow(
        source_id=source_id,
        name=_required(raw, "name"),
        credit_code=code,
        legal_person=_required(raw, "legal_person"),
        settlement_account=account,
        industry=_text(raw, "industry", required=False, length_max=64),
        phone=_phone(phone) if phone else None,
        channel_ids=channel_ids,
    )


def parse_person(raw: dict[str, Any]) -> PersonRow:
    source_id = source_id_of(raw)
    resident_id = _required(raw, "resident_id", 18).upper()
    if not resident_id_ok(resident_id):
        raise RowRejected(e.BAD_RESIDENT_ID, "the resident ID fails GB 11643 (birth date or check character)")
    level_text = _text(raw, "kyc_level", required=False, length_max=1) or "0"
    if level_text not in ("0", "1", "2"):
        raise RowRejected(e.BAD_FIELD, "kyc_level is 0, 1 or 2")
    card = _text(raw, "bank_card", required=False, length_max=23)
    if card is not None:
        card = card.replace(" ", "")
        if not _CARD_RE.match(card) or not luhn_ok(card):
            raise RowRejected(e.BAD_BANK_CARD, "the bank card number fails the Luhn check")
    if level_text == "2" and card is None:
        raise RowRejected(e.BAD_FIELD, "kyc_level 2 means a verified bank card: bank_card is missing")
    return PersonRow(
        source_id=source_id,
        name=_required(raw, "name"),
        resident_id=resident_id,
        phone=_phone(_required(raw, "phone", 20)),
        kyc_level=int(level_text),
        bank_card=card,
    )


def amount_of(raw: dict[str, Any]) -> int:
    text = _required(raw, "amount_minor", 20)
    if not _AMOUNT_RE.match(text):
        raise RowRejected(e.BAD_AMOUNT, "amount_minor is an integer in minor units (fen; points for XXX)")
    return int(text)


def parse_balance(raw: dict[str, Any]) -> BalanceRow:
    source_id = source_id_of(raw)
    person = source_id_of(raw, "person_source_id")
    try:
        subaccount = Subaccount(_required(raw, "subaccount", 16))
    except ValueError:
        raise RowRejected(e.BAD_FIELD, "subaccount is balance, prepaid, points or credit") from None
    currency = _required(raw, "currency", 3).upper()
    if currency not in CURRENCIES or (currency == POINTS_CURRENCY) != (subaccount is Subaccount.POINTS):
        raise RowRejected(e.BAD_FIELD, "currency: CNY, HKD or USD for money, XXX exactly for points")
    merchant = source_id_of(raw, "merchant_source_id") if subaccount is Subaccount.PREPAID else None
    amount = amount_of(raw)
    if amount < 0:
        raise RowRejected(e.NEGATIVE_BALANCE, "an opening balance is never negative (credit used: a credit row)")
    if amount > AMOUNT_MINOR_MAX:
        raise RowRejected(e.BAD_AMOUNT, "amount_minor is out of range")
    limit = None
    if subaccount is Subaccount.CREDIT:
        text = str(raw.get("credit_limit_minor") or "").strip()
        if not _AMOUNT_RE.match(text) or not amount <= int(text) <= AMOUNT_MINOR_MAX:
            raise RowRejected(e.BAD_AMOUNT, "a credit row needs credit_limit_minor, at least the amount owed")
        limit = int(text)
    return BalanceRow(source_id, person, subaccount, amount, currency, merchant, limit)


def face_value_of(raw: dict[str, Any]) -> int:
    """The coupon's face value (what the file's control totals count, accepted or not)."""
    text = _required(raw, "face_value_minor", 20)
    if not _AMOUNT_RE.match(text) or not 0 < int(text) <= AMOUNT_MINOR_MAX:
        raise RowRejected(e.BAD_AMOUNT, "face_value_minor is a positive integer in minor units (fen)")
    return int(text)


def _instant(raw: dict[str, Any], name: str) -> datetime:
    try:
        value = datetime.fromisoformat(_required(raw, name, 40))
    except ValueError:
        raise RowRejected(e.BAD_FIELD, f"{name} is an ISO 8601 date and time") from None
    if value.tzinfo is None:
        raise RowRejected(e.BAD_FIELD, f"{name} needs its UTC offset (e.g. +08:00)")
    return value


def parse_coupon(raw: dict[str, Any]) -> CouponRow:
    source_id = source_id_of(raw)
    person = source_id_of(raw, "person_source_id")
    code = _required(raw, "code", 64)
    if not _COUPON_CODE_RE.match(code):
        raise RowRejected(e.BAD_FIELD, "code has 4-64 letters, digits, _ or -")
    currency = _required(raw, "currency", 3).upper()
    if currency not in COUPON_CURRENCIES:
        raise RowRejected(e.BAD_FIELD, "currency: CNY, HKD or USD")
    face = face_value_of(raw)
    threshold_text = _text(raw, "threshold_minor", required=False, length_max=20) or "0"
    if not _AMOUNT_RE.match(threshold_text) or not 0 <= int(threshold_text) <= AMOUNT_MINOR_MAX:
        raise RowRejected(e.BAD_AMOUNT, "threshold_minor is an integer ≥ 0 in minor units")
    valid_from, valid_until = _instant(raw, "valid_from"), _instant(raw, "valid_until")
    if valid_until <= valid_from:
        raise RowRejected(e.BAD_FIELD, "valid_until is not after valid_from")
    merchant = source_id_of(raw, "merchant_source_id") if _text(raw, "merchant_source_id", required=False) else None
    return CouponRow(source_id, person, code, face, currency, int(threshold_text), valid_from, valid_until, merchant)


def parse(kind: Kind, raw: dict[str, Any]) -> Row:
    if kind is Kind.COUPONS:
        return parse_coupon(raw)
    if kind is Kind.MERCHANTS:
        return parse_merchant(raw)
    if kind is Kind.PERSONS:
        return parse_person(raw)
    return parse_balance(raw)


def juhe_holder_id(platform: str, kind: Kind, source_id: str) -> str:
    """Deterministic: the same source row always becomes the same holder, so a resumed or repeated batch
    finds its holder instead of opening a second one (the id map records it too)."""
    prefix = "mch" if kind is Kind.MERCHANTS else "usr"
    digest = hashlib.sha256(f"{platform}\x1f{kind.value}\x1f{source_id}".encode()).hexdigest()
    return f"{prefix}_mig_{digest[:26]}"


def document_digest(value: str) -> str:
    """Documents are compared by digest in the run's records: the migration database never stores an ID
    number in clear (the ledger's holder record is the one place that keeps it)."""
    return hashlib.sha256(value.encode()).hexdigest()
