"""What a suspended merchant may still do through the API (docs/onboarding.md, "Suspension").

Suspension stops new money coming in, not the merchant's duties to its payers: like Stripe, reads keep
working (the merchant reconciles, answers its customers, downloads statements), and so do refunds and the
writes that stop a payment from being taken (closing a payment, expiring a checkout session, deactivating
a payment link). Every other write of the merchant's — a new payment, checkout session, payment link,
webhook endpoint, profit sharing — is refused with 403 `merchant_suspended`.

Who is refused: the merchant's own identities (its API keys, its console staff) and end-user tokens scoped
to it (a checkout frontend paying it). The platform acting on its behalf is not: the platform is the one
that suspended it and may need to act on its account.
"""

from __future__ import annotations

import re

from gateway.domain.access import READ_METHODS, Principal

# Writes a suspended merchant may still make: method, path (as the gateway routes it).
_ALLOWED_WRITES = (
    ("POST", re.compile(r"^/v1/payments/[^/]+/refunds$")),
    ("POST", re.compile(r"^/v1/payments/[^/]+/close$")),
    ("POST", re.compile(r"^/v1/checkout/sessions/[^/]+/expire$")),
    ("POST", re.compile(r"^/v1/payment-links/[^/]+/deactivate$")),
)


def suspendable_merchant(principal: Principal, method: str, path: str) -> str | None:
    """The merchant whose suspension would refuse this request, or None when a suspension does not matter
    to it (a read, an allowed write, the platform's own call). The guard statement looks that merchant up."""
    if principal.kind not in ("merchant", "user") or principal.merchant_id is None:
        return None
    method = method.upper()
    if method in READ_METHODS:
        return None
    if any(method == m and pattern.match(path) for m, pattern in _ALLOWED_WRITES):
        return None
    return principal.merchant_id
