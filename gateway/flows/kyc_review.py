"""A reviewer's decision on an onboarding's KYC check that the identity provider holds for a manual review
(docs/onboarding.md §2, docs/protocols/identity.md §5), made from the operator console.

The onboarding's KYC step waits `pending` with `last_error.code = kyc_in_review` while the provider holds the check;
the decision goes to the provider (the one place the verdict lives: the step reads it by sending the check again),
then the onboarding is driven at once, so an approval activates the merchant before this call answers (or the
worker finishes the remaining steps) and a rejection leaves the step `rejected` with the provider's reason, in the
review queue like any refused step. Nothing else of the onboarding changes here.
"""

from __future__ import annotations

from typing import Any

from gateway.domain.access import Principal
from gateway.domain.errors import ONBOARDING_KYC_NOT_HELD
from gateway.flows.onboarding import OnboardingFlow
from libs.common.errors import Problem

HELD_CODE = "kyc_in_review"


def held_check_id(onboarding: dict[str, Any]) -> str | None:
    """The id of the check the provider holds for this onboarding, or None when its KYC step is not waiting on one.
    A check is `<onboarding_id>.<round>` (a retried KYC is a new round, so a new check)."""
    kyc = (onboarding.get("steps") or {}).get("kyc") or {}
    waiting = onboarding.get("status") == "processing" and kyc.get("status") == "pending"
    if not waiting or (kyc.get("last_error") or {}).get("code") != HELD_CODE:
        return None
    return f"{onboarding['onboarding_id']}.{int(kyc.get('round', 0))}"


async def decide(
    flow: OnboardingFlow, platform: Principal, onboarding_id: str, *, approve: bool, reason: str | None
) -> dict[str, Any]:
    """Approve or reject the held check, then drive the onboarding; the onboarding as it is after that (no secrets).
    409 `onboarding_kyc_not_held` when its KYC step does not wait on a held check (decided meanwhile, never held)."""
    onboarding = await flow.read(platform, onboarding_id)  # 404 unless it is this platform's
    check_id = held_check_id(onboarding)
    if check_id is None:
        raise Problem(ONBOARDING_KYC_NOT_HELD, f"onboarding {onboarding_id} has no KYC check held for a review")
    await flow.provider.decide_held_check(check_id, approve=approve, reason=reason)
    await flow.drive(onboarding_id, budget_seconds=flow.settings.onboarding_inline_seconds)
    return await flow.read(platform, onboarding_id)
