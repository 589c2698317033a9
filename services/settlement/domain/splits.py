"""Split rules and the arithmetic that divides an amount among receivers (分账).

Why integer-only and remainder-to-a-named-receiver: every fen of a payment must land with exactly one
party, so shares are computed by flooring and whatever the floors leave over goes to the receiver the
platform named, which makes Σ shares == amount an invariant (a hypothesis test holds it to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from libs.common.errors import Problem
from services.settlement.domain.errors import (
    DUPLICATE_RECEIVER,
    INVALID_SHARE,
    SHARE_EXCEEDS_RULE,
    SHARES_EXCEED_TOTAL,
    UNKNOWN_RECEIVER,
)

BPS_WHOLE = 10_000  # 100 % in basis points
SHARES_PER_RULE_MAX = 50
EXPLICIT_SPLIT_ENTRIES_MAX = 20
# Who gets what an explicit split leaves over: the payee merchant's own merchant_pending (no posting).
PAYEE = "@payee"


@dataclass(frozen=True, slots=True)
class Share:
    """One receiver's part: a percentage of the amount (basis points) or a fixed number of fen."""

    receiver_id: str
    percent_bps: int | None = None
    fixed_minor: int | None = None


@dataclass(frozen=True, slots=True)
class SplitRule:
    shares: tuple[Share, ...]
    remainder_receiver_id: str


def validate_rule(rule: SplitRule, known_receivers: Iterable[str]) -> None:
    """Refuse a rule that cannot always be honoured: unknown receivers, > 100 %, malformed shares."""
    known = set(known_receivers)
    if len(rule.shares) > SHARES_PER_RULE_MAX:
        raise Problem(INVALID_SHARE, f"at most {SHARES_PER_RULE_MAX} shares per rule")
    seen: set[str] = set()
    percent_total = 0
    for share in rule.shares:
        if (share.percent_bps is None) == (share.fixed_minor is None):
            raise Problem(INVALID_SHARE, f"share of {share.receiver_id} needs exactly one of percent_bps, fixed_minor")
        if share.percent_bps is not None and not 0 < share.percent_bps <= BPS_WHOLE:
            raise Problem(INVALID_SHARE, f"percent_bps of {share.receiver_id} must be 1..{BPS_WHOLE}")
        if share.fixed_minor is not None and share.fixed_minor <= 0:
            raise Problem(INVALID_SHARE, f"fixed_minor of {share.receiver_id} must be positive")
        if share.receiver_id in seen:
            raise Problem(
                DUPLICATE_RECEIVER, f"receiver {share.receiver_id} appears twice", receiver_id=share.receiver_id
            )
        seen.add(share.receiver_id)
        percent_total += share.percent_bps or 0
    if percent_total > BPS_WHOLE:
        raise Problem(
            SHARES_EXCEED_TOTAL, f"percentage shares add up to {percent_total} bps", percent_total_bps=percent_total
        )
    for receiver_id in [*seen, rule.remainder_receiver_id]:
        if receiver_id not in known:
            raise Problem(UNKNOWN_RECEIVER, f"receiver {receiver_id} is not registered", receiver_id=receiver_id)


def allocate(amount_minor: int, rule: SplitRule) -> dict[str, int]:
    """Divide `amount_minor` by the rule: fixed shares first (capped by what is left, in rule order),
    then percentages floored, then the remainder to the remainder receiver. Σ values == amount_minor,
    every value ≥ 0; receivers with 0 are left out except the remainder receiver."""
    if amount_minor < 0:
        raise ValueError("amount_minor must be ≥ 0")
    result: dict[str, int] = {}
    left = amount_minor
    for share in rule.shares:
        if share.fixed_minor is not None:
            part = min(share.fixed_minor, left)
            result[share.receiver_id] = result.get(share.receiver_id, 0) + part
            left -= part
    for share in rule.shares:
        if share.percent_bps is not None:
            part = min(amount_minor * share.percent_bps // BPS_WHOLE, left)
            result[share.receiver_id] = result.get(share.receiver_id, 0) + part
            left -= part
    result[rule.remainder_receiver_id] = result.get(rule.remainder_receiver_id, 0) + left
    return {k: v for k, v in result.items() if v or k == rule.remainder_receiver_id}


def proportional(original: Mapping[str, int], remainder_receiver_id: str, part_minor: int) -> dict[str, int]:
    """The shares of `part_minor` (≤ Σ original) in proportion to `original`, floors to everyone but the
    remainder receiver. At part == Σ original it returns `original` exactly, so a cumulative use
    (reversal = proportional(after) − proportional(before)) reverses every fen after a full refund."""
    total = sum(original.values())
    if not 0 <= part_minor <= total:
        raise ValueError("part_minor must be within 0..total")
    if total == 0:
        return {remainder_receiver_id: 0}
    result = {r: amount * part_minor // total for r, amount in original.items() if r != remainder_receiver_id}
    result[remainder_receiver_id] = part_minor - sum(result.values())
    return result


def reversal(
    original: Mapping[str, int], remainder_receiver_id: str, before_minor: int, after_minor: int
) -> dict[str, int]:
    """What each receiver gives back when the refunded split base grows from `before` to `after`.

    Signed: a receiver's floor can move by more than its exact share on one step, so the remainder
    receiver may get a (small) negative amount on a partial refund; Σ is always after − before and the
    cumulative total after a full refund is exactly the original split."""
    a = proportional(original, remainder_receiver_id, after_minor)
    b = proportional(original, remainder_receiver_id, before_minor)
    return {r: a.get(r, 0) - b.get(r, 0) for r in {*a, *b} if a.get(r, 0) != b.get(r, 0)}


def rule_cap_minor(share: Share, keep_minor: int) -> int:
    """The most a receiver's rule share can give it of `keep_minor` (what the merchant keeps)."""
    if share.fixed_minor is not None:
        return min(share.fixed_minor, keep_minor)
    return keep_minor * (share.percent_bps or 0) // BPS_WHOLE


def validate_explicit(split: Sequence[tuple[str, int]], rule: SplitRule, keep_minor: int) -> None:
    """An explicit split (docs/contracts.md §1) must fit the merchant's rule: only the rule's receivers, each at
    most its rule share (percent of, or fixed part of, what the merchant keeps after the platform fee;
    the rule's remainder receiver is not capped), all together at most what the merchant keeps.
    Why caps: the rule is the platform's word on who may take how much; a request can only choose less."""
    if not 0 < len(split) <= EXPLICIT_SPLIT_ENTRIES_MAX:
        raise Problem(INVALID_SHARE, f"an explicit split has 1..{EXPLICIT_SPLIT_ENTRIES_MAX} entries")
    shares = {share.receiver_id: share for share in rule.shares}
    seen: set[str] = set()
    for receiver_id, amount in split:
        if amount <= 0:
            raise Problem(INVALID_SHARE, f"amount_minor of {receiver_id} must be positive", receiver_id=receiver_id)
        if receiver_id in seen:
            raise Problem(DUPLICATE_RECEIVER, f"receiver {receiver_id} appears twice", receiver_id=receiver_id)
        seen.add(receiver_id)
        if receiver_id not in shares and receiver_id != rule.remainder_receiver_id:
            raise Problem(
                UNKNOWN_RECEIVER, f"receiver {receiver_id} is not in the merchant's split rule", receiver_id=receiver_id
            )
    total = sum(amount for _, amount in split)
    if total > keep_minor:
        raise Problem(
            SHARES_EXCEED_TOTAL,
            f"the split adds up to {total}, more than the {keep_minor} the merchant keeps after the platform fee",
            total_minor=total,
            keep_minor=keep_minor,
        )
    for receiver_id, amount in split:
        share = shares.get(receiver_id)
        if share is not None and receiver_id != rule.remainder_receiver_id:
            cap = rule_cap_minor(share, keep_minor)
            if amount > cap:
                raise Problem(
                    SHARE_EXCEEDS_RULE,
                    f"{receiver_id} may receive at most {cap} by the split rule",
                    receiver_id=receiver_id,
                    cap_minor=cap,
                )


def allocate_explicit(base_minor: int, split: Sequence[tuple[str, int]]) -> dict[str, int]:
    """The explicit amounts in order, each capped by what is left of `base_minor` (the platform fee rate may
    have changed since the check), the rest to the payee (`PAYEE`). Σ values == base_minor."""
    if base_minor < 0:
        raise ValueError("base_minor must be ≥ 0")
    result: dict[str, int] = {}
    left = base_minor
    for receiver_id, amount in split:
        part = min(amount, left)
        if part:
            result[receiver_id] = result.get(receiver_id, 0) + part
        left -= part
    result[PAYEE] = left
    return result


def platform_fee_minor(amount_minor: int, rate_bps: int) -> int:
    """The merchant's platform fee, rounded half-up to the fen (the same rule the channels use)."""
    return (amount_minor * rate_bps + BPS_WHOLE // 2) // BPS_WHOLE


def refunded_fee_minor(fee_minor: int, payment_minor: int, refunded_minor: int) -> int:
    """Fee given back for a cumulative refund, rounded down (docs/ledger.md §3.3)."""
    return fee_minor * refunded_minor // payment_minor if payment_minor else 0
