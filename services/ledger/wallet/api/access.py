"""Who may do what on the wallet API (the gateway forwards users, merchants and platforms to `/v1/wallet`).

- A **platform** operator or a Juhe **service** (cashier, settlement), or an internal call without a token,
  acts for any holder.
- A **user** acts on its own wallet only: open its own holder, submit KYC, create top-up orders, withdraw,
  pay, buy prepaid cards, transfer, exchange points, repay its own bills, and read everything of its own.
  A **merchant** likewise on its own holder and balances.
- Operator-only (a user or merchant never, even on its own wallet): direct top-ups (they create money),
  points grants, the credit line, bill generation, entitlement changes and their audit, post/void of a hold.

Routes with the holder in the path are checked here for every request; routes that name another resource
(an operation, a bill, the holder being opened) are listed in `OWNER_CHECKED_ROUTES` and check the owner
of that resource themselves with `require_own`; any other route is closed to users and merchants.
"""

from __future__ import annotations

from fastapi import Request

from libs.common.errors import FORBIDDEN, Problem
from libs.common.internal_auth import IDENTITY_HEADER, Identity, internal_identity

OPERATOR_ONLY_ROUTES = frozenset(
    {
        "/v1/wallet/holders/{holder_id}/top-ups",
        "/v1/wallet/holders/{holder_id}/points/grants",
        "/v1/wallet/holders/{holder_id}/credit-line",
        "/v1/wallet/holders/{holder_id}/bills",
        "/v1/wallet/entitlements/changes",
        "/v1/wallet/operations/{operation_id}/post",
        "/v1/wallet/operations/{operation_id}/void",
    }
)

OWNER_CHECKED_ROUTES = frozenset(
    {
        ("POST", "/v1/wallet/holders"),
        ("GET", "/v1/wallet/operations"),
        ("GET", "/v1/wallet/operations/{operation_id}"),
        ("GET", "/v1/wallet/bills/{bill_id}"),
        ("POST", "/v1/wallet/bills/{bill_id}/repayments"),
        ("GET", "/v1/wallet/entitlements"),  # the rules in force: nobody's data
    }
)


def scoped_identity(request: Request) -> Identity | None:
    """The caller when it is limited to its own wallet (a user or a merchant); None when it acts for any."""
    if IDENTITY_HEADER not in request.headers:
        return None
    identity = internal_identity(request)
    return identity if identity.kind in ("user", "merchant") else None


def own_holder_id(identity: Identity) -> str | None:
    return identity.user if identity.kind == "user" else identity.merchant_id


def require_own(request: Request, holder_id: str) -> None:
    """403 unless the caller may act for `holder_id`."""
    identity = scoped_identity(request)
    if identity is not None and own_holder_id(identity) != holder_id:
        raise Problem(FORBIDDEN, "this identity may only act on its own wallet")


def holder_scope(request: Request) -> None:
    """Router dependency of every wallet route (see the module docstring)."""
    identity = scoped_identity(request)
    if identity is None:
        return
    route_path = getattr(request.scope.get("route"), "path", "")
    if route_path in OPERATOR_ONLY_ROUTES:
        raise Problem(FORBIDDEN, "only the platform or a Juhe service may do this")
    holder = request.path_params.get("holder_id") or request.path_params.get("merchant_id")
    if holder is None:
        if (request.method, route_path) not in OWNER_CHECKED_ROUTES:
            raise Problem(FORBIDDEN, "only the platform or a Juhe service may do this")
        return
    if holder != own_holder_id(identity):
        raise Problem(FORBIDDEN, "this identity may only act on its own wallet")


def is_scoped(request: Request) -> bool:
    return scoped_identity(request) is not None
