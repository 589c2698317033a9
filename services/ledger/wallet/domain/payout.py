"""Where a wallet withdrawal is paid: its payout rail and payee, checked before any money is held.

A withdrawal names a `rail`: `bank` (default: the verified bank card bound at opening, as always),
`wechat_change` (WeChat 商家转账 to the holder's openid) or `alipay_account` (Alipay transfer to the holder's
Alipay user id). Settlement pays it out and reads the choice from the operation's `details.payout` (its
`flows/withdrawals.py` `payout_of`): {"rail", "payee", "payee_type", "payee_name"}; a bank withdrawal has no
`details.payout` (settlement pays `details.bank_card`), exactly as before rails existed, so the operations and
idempotent replays of older requests are unchanged.

Why the payee name is always the holder's verified name: a wallet's money leaves only to its holder's own
(same-name, 本人同名) accounts. WeChat and Alipay check that name against the account's real name, so a
withdrawal to somebody else's openid or Alipay id is refused by the channel (and the hold voided) instead of
paying a stranger; a request naming someone else is refused here, before anything is held.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from services.ledger.wallet.domain import errors
from services.ledger.wallet.domain.errors import WalletError

Rail = Literal["bank", "wechat_change", "alipay_account"]
RAILS: tuple[Rail, ...] = ("bank", "wechat_change", "alipay_account")
ALIPAY_USER_ID = "ALIPAY_USER_ID"
# Alipay identity types that exist but that settlement's transfer does not send (it pays by user id only).
ALIPAY_OTHER_IDENTITY_TYPES = frozenset({"ALIPAY_LOGON_ID", "ALIPAY_OPEN_ID"})
_OPENID = re.compile(r"[A-Za-z0-9_\-]{1,128}")  # WeChat openids: 28 URL-safe characters in practice
_ALIPAY_USER_ID = re.compile(r"2088\d{12}")  # Alipay user ids: 2088 and 12 digits
_FIELDS: dict[str, frozenset[str]] = {
    "wechat_change": frozenset({"openid", "user_name"}),
    "alipay_account": frozenset({"identity", "identity_type", "name"}),
}


def payout_details(rail: str, payee: Mapping[str, Any] | None, holder_name: str) -> dict[str, Any] | None:
    """The `details.payout` of a withdrawal on `rail` to `payee` (the request's fields that were set), or None
    for the bank rail. Raises WalletError (422) when the payee is missing, does not fit the rail, or names
    someone other than the holder."""
    given = {k: v for k, v in (payee or {}).items() if v is not None}
    if rail == "bank":
        if given:
            raise WalletError(errors.PAYEE_INVALID, "the bank rail pays the verified bound card: send no payee")
        return None
    if rail not in _FIELDS:
        raise WalletError(errors.PAYEE_INVALID, f"rail must be one of {', '.join(RAILS)}")
    if not given:
        raise WalletError(errors.PAYEE_REQUIRED, f"a withdrawal on {rail} needs a payee")
    foreign = sorted(set(given) - _FIELDS[rail])
    if foreign:
        raise WalletError(
            errors.PAYEE_INVALID, f"{', '.join(foreign)} do not apply to {rail}", fields=sorted(_FIELDS[rail])
        )
    if rail == "wechat_change":
        payee_id, payee_type, name = _wechat(given)
    else:
        payee_id, payee_type, name = _alipay(given)
    if name is not None and name.strip() != holder_name:
        raise WalletError(errors.PAYEE_NAME_MISMATCH, "the payee's name must be the holder's verified name")
    return {"rail": rail, "payee": payee_id, "payee_type": payee_type, "payee_name": holder_name}


def _wechat(payee: Mapping[str, Any]) -> tuple[str, str, str | None]:
    openid = payee.get("openid")
    if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
        raise WalletError(errors.PAYEE_INVALID, "payee.openid must be the holder's openid at the platform's appid")
    return openid, "openid", payee.get("user_name")


def _alipay(payee: Mapping[str, Any]) -> tuple[str, str, str | None]:
    identity_type = payee.get("identity_type") or ALIPAY_USER_ID
    if identity_type in ALIPAY_OTHER_IDENTITY_TYPES:
        raise WalletError(
            errors.PAYEE_IDENTITY_TYPE_UNSUPPORTED,
            f"{identity_type} is not paid to; give the Alipay user id (2088…) as ALIPAY_USER_ID",
        )
    if identity_type != ALIPAY_USER_ID:
        raise WalletError(errors.PAYEE_INVALID, "payee.identity_type must be ALIPAY_USER_ID")
    identity = payee.get("identity")
    if not isinstance(identity, str) or not _ALIPAY_USER_ID.fullmatch(identity):
        raise WalletError(errors.PAYEE_INVALID, "payee.identity must be an Alipay user id: 2088 and 12 digits")
    return identity, ALIPAY_USER_ID, payee.get("name")
