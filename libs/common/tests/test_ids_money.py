from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from libs.common.ids import has_prefix, new_id
from libs.common.money import MAX_AMOUNT_MINOR, AmountMinor, Currency


def test_ids_are_prefixed_and_sortable() -> None:
    ids = [new_id("pay") for _ in range(200)]
    assert all(has_prefix(i, "pay") for i in ids)
    assert ids == sorted(ids)
    assert not has_prefix(ids[0], "re")
    with pytest.raises(ValueError):
        new_id("Bad-Prefix")


class Charge(BaseModel):
    amount_minor: AmountMinor
    currency: Currency


@pytest.mark.parametrize("amount", [0, -1, 1.5, "100", MAX_AMOUNT_MINOR + 1, True])
def test_amounts_are_strict_positive_integers(amount: object) -> None:
    with pytest.raises(ValidationError):
        Charge(amount_minor=amount, currency="CNY")  # type: ignore[arg-type]


def test_currency_must_be_known() -> None:
    assert Charge(amount_minor=MAX_AMOUNT_MINOR, currency="CNY").amount_minor == MAX_AMOUNT_MINOR
    with pytest.raises(ValidationError):
        Charge(amount_minor=1, currency="cny")
