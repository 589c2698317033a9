"""Which onboardings an operator may decide a KYC check for: only one whose KYC step waits on a check the identity
provider holds (gateway/flows/kyc_review.py); the check id is the one the step sent (`<onboarding_id>.<round>`)."""

from __future__ import annotations

from typing import Any

from gateway.flows.kyc_review import held_check_id

ONB = "onb_" + "0" * 32


def onboarding(status: str, kyc: dict[str, Any]) -> dict[str, Any]:
    return {"onboarding_id": ONB, "status": status, "steps": {"identity": {"status": "verified"}, "kyc": kyc}}


def test_a_held_check_is_named_by_its_round_and_nothing_else_is_held() -> None:
    held = {"status": "pending", "last_error": {"code": "kyc_in_review", "detail": "held"}}
    assert held_check_id(onboarding("processing", held)) == f"{ONB}.0"
    assert held_check_id(onboarding("processing", held | {"round": 2})) == f"{ONB}.2"
    down = {"status": "pending", "last_error": {"code": "service_unavailable"}}
    assert held_check_id(onboarding("processing", down)) is None  # waits for the provider, not for a reviewer
    assert held_check_id(onboarding("processing", {"status": "pending", "last_error": None})) is None
    assert (
        held_check_id(onboarding("rejected", {"status": "rejected", "reasons": [{"code": "rejected_manually"}]}))
        is None
    )
    assert held_check_id(onboarding("active", {"status": "active"})) is None
    assert held_check_id({"onboarding_id": ONB, "status": "processing", "steps": {}}) is None
