"""Special-rate programmes, pure rules: eligibility, application transitions, the savings projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.routing.domain.special_rates import (
    Application,
    ApplicationStatus,
    MerchantProfile,
    PaymentFee,
    TransitionRefused,
    eligibility,
    eligible_programmes,
    parse_catalogue,
    project_merchant,
)
from services.routing.flows.special_rates import EXAMPLE_CATALOGUE_PATH

CATALOGUE = parse_catalogue(EXAMPLE_CATALOGUE_PATH.read_text(encoding="utf-8"))
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SCHOOL = MerchantProfile("mch_school", "company", "8211")
KIOSK = MerchantProfile("mch_kiosk", "individual_business", "5499")

# The fixed data set of the hand computation (tests/integration/test_special_rates.py sends the same).
PAYMENTS = [
    PaymentFee("pay_s1", "mch_school", "wechat", 10_000, 38),
    PaymentFee("pay_s2", "mch_school", "wechat", 12_345, 47),
    PaymentFee("pay_s3", "mch_school", "wechat", 25, 0),
    PaymentFee("pay_s4", "mch_school", "alipay", 50_000, 300),
    PaymentFee("pay_k1", "mch_kiosk", "alipay", 20_000, 120),
    PaymentFee("pay_k2", "mch_kiosk", "wechat", 3_333, 20),
    PaymentFee("pay_k3", "mch_kiosk", "alipay", 1_000, 6),
]


def test_the_shipped_catalogue_is_labelled_an_example() -> None:
    assert CATALOGUE.example and "EXAMPLE" in CATALOGUE.notice
    assert CATALOGUE.programmes and all(p.example for p in CATALOGUE.programmes)
    assert {p.channel for p in CATALOGUE.programmes} == {"wechatpay", "alipay"}


def test_eligibility_by_entity_type_industry_code_and_programme_window() -> None:
    assert [p.programme_id for p in eligible_programmes(SCHOOL, CATALOGUE, at=NOW)] == ["wx_education"]
    assert [p.programme_id for p in eligible_programmes(KIOSK, CATALOGUE, at=NOW)] == [
        "ali_micro_merchant",
        "wx_micro_merchant",
    ]
    canteen = CATALOGUE.get("ali_canteen")
    assert canteen is not None
    wrong_industry = eligibility(MerchantProfile("m", "company", "5411"), canteen, at=NOW)
    assert not wrong_industry.eligible and "industry code 5411" in wrong_industry.reasons[0]
    wrong_entity = eligibility(MerchantProfile("m", "individual", "5812"), canteen, at=NOW)
    assert not wrong_entity.eligible and "entity type individual" in wrong_entity.reasons[0]
    assert eligibility(MerchantProfile("m", "company", "5812"), canteen, at=NOW).eligible
    after_the_programme = eligibility(
        MerchantProfile("m", "company", "5812"), canteen, at=datetime(2028, 1, 1, tzinfo=UTC)
    )
    assert not after_the_programme.eligible


def test_profile_validation() -> None:
    assert MerchantProfile("m", "company", "8211").validate() == []
    assert {e.field for e in MerchantProfile("m", "sole_trader", "82a1").validate()} == {"entity_type", "industry_code"}


def test_application_transitions_are_named_and_refuse_the_wrong_status() -> None:
    programme = CATALOGUE.get("wx_education")
    assert programme is not None
    draft = Application("spa_1", "mch_school", "wx_education", ApplicationStatus.DRAFT, ("business_licence",))
    assert draft.missing_documents(programme) == ["school_operating_permit", "fee_schedule_approval"]
    submitted = draft.submit(programme)
    assert submitted.status is ApplicationStatus.SUBMITTED and submitted.version == 2
    start = datetime(2027, 1, 1, tzinfo=UTC)
    approved = submitted.approve(programme, effective_from=start, rate_ids=["fr_1"])
    assert approved.status is ApplicationStatus.APPROVED
    assert (approved.effective_from, approved.effective_until) == (start, start + timedelta(days=365))
    for refused in (lambda: approved.reject("late"), lambda: approved.submit(programme), lambda: draft.reject("x")):
        with pytest.raises(TransitionRefused):
            refused()
    assert submitted.reject("licence expired").rejection_reason == "licence expired"
    canteen = CATALOGUE.get("ali_canteen")
    assert canteen is not None and canteen.available_until is not None
    late = Application("spa_2", "m", "ali_canteen", ApplicationStatus.SUBMITTED, ())
    ends = late.approve(canteen, effective_from=datetime(2027, 6, 1, tzinfo=UTC), rate_ids=[]).effective_until
    assert ends == canteen.available_until  # never past the programme's own end


def test_fees_under_a_programme_round_half_up_and_respect_its_cap() -> None:
    utilities = CATALOGUE.get("wx_public_utilities")
    assert utilities is not None and (utilities.rate_bps, utilities.cap_minor) == (10, 500)
    assert utilities.fee_minor(10_000_000) == 500  # 10 000 fen at 0.1 %, capped at 500
    assert utilities.fee_minor(4_995) == 5  # 4.995 → 5
    assert utilities.fee_minor(4_949) == 5  # 4.949 → 5
    assert utilities.fee_minor(4_449) == 4


def test_projection_equals_the_hand_computation() -> None:
    school = project_merchant("mch_school", PAYMENTS, eligible_programmes(SCHOOL, CATALOGUE, at=NOW))
    assert (school.payment_count, school.volume_minor, school.fees_minor) == (4, 72_370, 385)
    (education,) = school.programmes
    # 10 000 × 0.20 % = 20; 12 345 × 0.20 % = 24.69 → 25; 25 × 0.20 % = 0.05 → 0; Alipay untouched.
    assert (education.payment_count, education.volume_minor, education.fees_minor) == (3, 22_370, 85)
    assert (education.projected_fees_minor, education.savings_minor) == (45, 40)
    assert school.best_savings_minor == 40

    kiosk = project_merchant("mch_kiosk", PAYMENTS, eligible_programmes(KIOSK, CATALOGUE, at=NOW))
    assert (kiosk.payment_count, kiosk.volume_minor, kiosk.fees_minor) == (3, 24_333, 146)
    by_id = {p.programme_id: p for p in kiosk.programmes}
    # Alipay at 0.38 %: 20 000 → 76, 1 000 → 3.8 → 4 (was 120 + 6); WeChat: 3 333 → 12.67 → 13 (was 20).
    assert (by_id["ali_micro_merchant"].projected_fees_minor, by_id["ali_micro_merchant"].savings_minor) == (80, 46)
    assert (by_id["wx_micro_merchant"].projected_fees_minor, by_id["wx_micro_merchant"].savings_minor) == (13, 7)
    assert kiosk.best_savings_minor == 53  # both methods' best added: 46 + 7
