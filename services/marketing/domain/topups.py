"""Top-up promotions (充值送): which tier a paid top-up reaches, and what a consistent rule is. Pure.

Why tiers are checked strictly ascending in both the threshold and the bonus: "the highest tier reached" is then
the last tier whose threshold the top-up meets, and a larger top-up never gets a smaller bonus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from libs.common.errors import Problem
from services.marketing.domain.errors import INVALID_TOPUP_PROMOTION


@dataclass(frozen=True, slots=True)
class Tier:
    min_topup_minor: int
    bonus_minor: int


def check_rule(
    tiers: Sequence[Tier], *, budget_minor: int, valid_from: datetime | None, valid_until: datetime | None
) -> None:
    """Refuses (422 `invalid_topup_promotion`, with `field`) a rule that could not be applied as written."""
    for before, after in pairwise(tiers):
        if after.min_topup_minor <= before.min_topup_minor or after.bonus_minor <= before.bonus_minor:
            raise Problem(
                INVALID_TOPUP_PROMOTION, "tiers must ascend in both min_topup_minor and bonus_minor", field="tiers"
            )
    if any(t.bonus_minor > t.min_topup_minor for t in tiers):
        raise Problem(INVALID_TOPUP_PROMOTION, "a bonus above its top-up is not a promotion", field="tiers")
    if budget_minor < tiers[0].bonus_minor:
        raise Problem(INVALID_TOPUP_PROMOTION, "the budget does not cover one bonus", field="budget_minor")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise Problem(INVALID_TOPUP_PROMOTION, "valid_until must be after valid_from", field="valid_until")


def bonus_for(tiers: Sequence[Tier], topup_minor: int) -> int:
    """The bonus of the highest tier the top-up reaches; 0 below the first tier."""
    reached = [t.bonus_minor for t in tiers if topup_minor >= t.min_topup_minor]
    return reached[-1] if reached else 0


def in_window(at: datetime, valid_from: datetime | None, valid_until: datetime | None) -> bool:
    return (valid_from is None or at >= valid_from) and (valid_until is None or at < valid_until)
