"""Merchant onboarding as a state machine of steps (pure: no I/O; `gateway/flows/onboarding.py` drives it).

One onboarding sets a merchant up everywhere, in this order, each step recorded with its own status:

    identity   the gateway merchant, its API key and webhook secret (done inside the creating request)
    kyc        the identity provider: business-licence number (USCC check character), the legal
               representative's ID number (GB 11643), the settlement account's holder name at the bank
    ledger     the merchant's holder and accounts in the ledger
    cashier    the notify URL and the channel configurations in the cashier
    routing    the merchant's profile (entity type, industry) and a contract per channel route
    settlement the settlement cycle, the platform fee rate and (optional) split rule

A step goes `pending → verified` when its work is done (checked, or provisioned at its service), or
`pending → rejected` with reasons when it cannot be done with this data. Only when every step is
verified is the merchant activated, and then every step is `active` at once: until that moment the
merchant's keys are refused, so a rejected KYC can never leave a merchant half able to take payments.
Steps after a rejected one stay `pending` (nothing was created for them). A transient failure (a service
down) leaves the step `pending` with its last error and the worker tries again later (`retry_delay_seconds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.domain.access import Principal
from gateway.domain.errors import CONSOLE_PERMISSION_DENIED, ROUTE_FORBIDDEN
from libs.common.errors import Problem

StepName = Literal["identity", "kyc", "ledger", "cashier", "routing", "settlement"]
StepStatus = Literal["pending", "verified", "active", "rejected"]
OnboardingStatus = Literal["processing", "active", "rejected"]

STEPS: tuple[StepName, ...] = ("identity", "kyc", "ledger", "cashier", "routing", "settlement")
ENTITY_TYPES = ("individual", "individual_business", "company")
# Entity types with a business licence (营业执照): its unified social credit code is checked.
LICENSED_ENTITY_TYPES = frozenset({"individual_business", "company"})
RETRY_DELAY_SECONDS_MIN = 1.0
RETRY_DELAY_SECONDS_MAX = 300.0
REASONS_MAX = 10


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a step was rejected (or why it waits): a stable code, the field it is about, words for people."""

    code: str
    detail: str
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running one step gave: `verified`, `rejected` (with reasons), or `retry` (transient: try later)."""

    result: Literal["verified", "rejected", "retry"]
    reasons: tuple[Reason, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


def initial_steps() -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {name: {"status": "pending", "reasons": [], "attempts": 0} for name in STEPS}
    steps["identity"].update(status="verified", attempts=1)
    return steps


def next_step(steps: Mapping[str, Mapping[str, Any]]) -> StepName | None:
    """The first step still pending, or None when none is (all verified, or one rejected)."""
    for name in STEPS:
        status = steps[name]["status"]
        if status == "rejected":
            return None
        if status == "pending":
            return name
    return None


def overall_status(steps: Mapping[str, Mapping[str, Any]]) -> OnboardingStatus:
    statuses = [steps[name]["status"] for name in STEPS]
    if "rejected" in statuses:
        return "rejected"
    if all(s == "active" for s in statuses):
        return "active"
    return "processing"


def ready_to_activate(steps: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(steps[name]["status"] == "verified" for name in STEPS)


def apply_outcome(steps: Mapping[str, Mapping[str, Any]], name: StepName, outcome: Outcome) -> dict[str, Any]:
    """A new steps document with `outcome` recorded on step `name` (which must be pending)."""
    if steps[name]["status"] != "pending":
        raise ValueError(f"step {name} is {steps[name]['status']}, not pending")
    updated = {k: dict(v) for k, v in steps.items()}
    step = updated[name]
    step["attempts"] = int(step.get("attempts", 0)) + 1
    reasons = [r.as_dict() for r in outcome.reasons[:REASONS_MAX]]
    if outcome.result == "retry":
        step["last_error"] = reasons[0] if reasons else None
        return updated
    step.pop("last_error", None)
    step["status"] = outcome.result
    step["reasons"] = reasons
    if outcome.detail:
        step["detail"] = outcome.detail
    return updated


def activated(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    if not ready_to_activate(steps):
        raise ValueError("every step must be verified before the merchant is activated")
    return {k: {**v, "status": "active"} for k, v in steps.items()}


def reopened(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A retry: rejected steps become pending again (with their reasons kept as `previous_reasons`)."""
    updated: dict[str, Any] = {}
    for name, step in steps.items():
        if step["status"] == "rejected":
            # A new round: the identity provider decides once per check, so a retried KYC is a new check.
            updated[name] = {
                **step,
                "status": "pending",
                "previous_reasons": step["reasons"],
                "reasons": [],
                "round": int(step.get("round", 0)) + 1,
            }
        else:
            updated[name] = dict(step)
    return updated


def retry_delay_seconds(attempts: int) -> float:
    """Exponential backoff, bounded: 1 s, 2 s, 4 s … at most 5 minutes."""
    exponent = max(0, min(attempts - 1, 16))
    return min(RETRY_DELAY_SECONDS_MAX, RETRY_DELAY_SECONDS_MIN * float(2**exponent))


def expected_account_name(entity_type: str, legal_name: str, representative_name: str) -> str:
    """Whose name the settlement account must carry: the business's own (对公账户) for a company, the
    person's for an individual; an individual business may settle to either (个体工商户)."""
    return representative_name if entity_type == "individual" else legal_name


def account_name_reasons(
    entity_type: str, *, legal_name: str, representative_name: str, account_name: str
) -> tuple[Reason, ...]:
    """Juhe's own rule before the provider is asked: money settles only to the merchant's own account."""
    allowed = {expected_account_name(entity_type, legal_name, representative_name)}
    if entity_type == "individual_business":
        allowed.add(representative_name)
    if account_name.strip() in allowed:
        return ()
    return (
        Reason(
            "bank_account_name_mismatch",
            f"a {entity_type} settles to an account in the name of {' or '.join(sorted(allowed))}",
            field="settlement_account.account_name",
        ),
    )


SUSPENSION_ACTIONS = ("suspended", "resumed")

# What an operator's console session needs for each operation (gateway/domain/staff.py's platform permissions); the
# platform's admin key may do all of them. An operator creates an onboarding through the console's own route
# (`POST /v1/console/merchant-onboardings`, SUSPEND_PERMISSION) and decides a held KYC check with RETRY_PERMISSION.
READ_PERMISSION = "platform.merchants.read"
RETRY_PERMISSION = "platform.kyc.review"
SUSPEND_PERMISSION = "platform.merchants.manage"


def require_operator(principal: Principal, permission: str) -> None:
    """The platform's admin key, or an operator's console session whose role has `permission`; else 403."""
    if principal.kind != "platform" or (principal.staff_id is None and principal.permissions is not None):
        raise Problem(ROUTE_FORBIDDEN, "platform operators only")
    if principal.staff_id is not None and (principal.permissions is None or permission not in principal.permissions):
        raise Problem(CONSOLE_PERMISSION_DENIED, f"your role does not have {permission}")


def actor_of(principal: Principal) -> str:
    """Who did it, for the audit: the console member, else the platform key."""
    return f"staff:{principal.staff_id}" if principal.staff_id is not None else f"platform:{principal.key_id}"
