"""Console staff: roles as sets of permissions, passwords, second factors, lockout. Pure rules, no I/O.

Why data and not code: a role is only as good as the checks that read it, so each role is a named set of
permissions (docs/consoles.md shows the same matrix, and a test compares the two), every console page names
the one permission it needs, and the gateway checks a staff session's API calls against the same sets
(`api_permission`). A permission a role does not list is refused: there is no "allow unless denied".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.domain.access import Principal
from gateway.domain.errors import ROUTE_FORBIDDEN
from libs.common.errors import VALIDATION_FAILED, Problem
from libs.common.modes import MODES

StaffKind = Literal["merchant", "operator"]

# ---- permissions -----------------------------------------------------------------------------------------
MERCHANT_PERMISSIONS: tuple[str, ...] = (
    "dashboard.read",
    "payments.read",
    "refunds.create",
    "refunds.approve",
    "webhooks.resend",
    "statements.read",
    "payouts.read",
    "payouts.create",
    "api_keys.read",
    "api_keys.manage",
    "staff.read",
    "staff.manage",
    "audit.read",
    "settings.manage",
    "webhooks.manage",
    "payment_links.manage",
    "coupons.read",
    "coupons.manage",
    "coupons.redeem",
)
PLATFORM_PERMISSIONS: tuple[str, ...] = (
    "platform.dashboard.read",
    "platform.merchants.read",
    "platform.merchants.manage",
    "platform.kyc.review",
    "platform.routing.read",
    "platform.routing.manage",
    "platform.settlement.read",
    "platform.settlement.manage",
    "platform.reconciliation.read",
    "platform.reconciliation.resolve",
    "platform.wallets.read",
    "platform.wallets.manage",
    "platform.ledger.read",
    "platform.audit.read",
    "platform.health.read",
    "platform.staff.manage",
)
_PLATFORM_READS = frozenset(p for p in PLATFORM_PERMISSIONS if p.endswith(".read"))

MERCHANT_ROLES: dict[str, frozenset[str]] = {
    "owner": frozenset(MERCHANT_PERMISSIONS),
    # Everything but moving money out: a payout needs the owner or finance.
    "admin": frozenset(MERCHANT_PERMISSIONS) - {"payouts.create"},
    "finance": frozenset(
        {
            "dashboard.read",
            "payments.read",
            "refunds.create",
            "refunds.approve",
            "statements.read",
            "payouts.read",
            "payouts.create",
            "payment_links.manage",
            "coupons.read",
        }
    ),
    # Support serves payers at the counter: payment links for them, coupons redeemed (核销) at the till.
    "support": frozenset(
        {
            "dashboard.read",
            "payments.read",
            "refunds.create",
            "webhooks.resend",
            "payment_links.manage",
            "coupons.redeem",
        }
    ),
    "developer": frozenset(
        {"dashboard.read", "payments.read", "webhooks.resend", "webhooks.manage", "api_keys.read", "api_keys.manage"}
    ),
    "read_only": frozenset({"dashboard.read", "payments.read", "statements.read", "payouts.read", "coupons.read"}),
}
PLATFORM_ROLES: dict[str, frozenset[str]] = {
    "super_admin": frozenset(PLATFORM_PERMISSIONS),
    "operations": frozenset(PLATFORM_PERMISSIONS) - {"platform.staff.manage", "platform.settlement.manage"},
    "risk": frozenset(
        {
            "platform.dashboard.read",
            "platform.merchants.read",
            "platform.kyc.review",
            "platform.wallets.read",
            "platform.wallets.manage",
            "platform.ledger.read",
            "platform.audit.read",
            "platform.reconciliation.read",
        }
    ),
    "finance": frozenset(
        {
            "platform.dashboard.read",
            "platform.merchants.read",
            "platform.routing.read",
            "platform.settlement.read",
            "platform.settlement.manage",
            "platform.reconciliation.read",
            "platform.reconciliation.resolve",
            "platform.ledger.read",
        }
    ),
    "support": frozenset(
        {
            "platform.dashboard.read",
            "platform.merchants.read",
            "platform.wallets.read",
            "platform.reconciliation.read",
            "platform.health.read",
        }
    ),
    "read_only": _PLATFORM_READS,
}
assert all(perms <= set(MERCHANT_PERMISSIONS) for perms in MERCHANT_ROLES.values())
assert all(perms <= set(PLATFORM_PERMISSIONS) for perms in PLATFORM_ROLES.values())


def roles_of(kind: StaffKind) -> dict[str, frozenset[str]]:
    return MERCHANT_ROLES if kind == "merchant" else PLATFORM_ROLES


def permissions_of(kind: StaffKind, role: str) -> frozenset[str]:
    """The role's permissions; an unknown role (a role removed from the code) has none."""
    return roles_of(kind).get(role, frozenset())


def may_assign(kind: StaffKind, actor_role: str, role: str) -> bool:
    """Who may hand out a role: someone whose own role has every permission of it (gateway/flows/staff.py holds changing
    or removing a member to the same rule). So only an owner (super admin) makes or unmakes owners (super admins),
    and an admin, who may not pay out, cannot make a finance member who may (a second address of their own, say)."""
    return role in roles_of(kind) and permissions_of(kind, role) <= permissions_of(kind, actor_role)


# ---- which public API a staff session may call --------------------------------------------------------------
# (method class, path prefix, permission): the gateway checks a staff session's proxied calls against these, on
# top of the web process's page checks, so a leaked session token is no more than its role. Longest prefix of
# the matching method class wins; a path not listed is refused for every staff session.
_API_RULES: tuple[tuple[str, str, str], ...] = (
    ("read", "/v1/payments", "payments.read"),
    ("read", "/v1/refunds", "payments.read"),
    ("read", "/v1/webhook-deliveries", "payments.read"),
    ("write", "/v1/webhook-deliveries", "webhooks.resend"),  # the one write there: POST …/{id}/resend
    ("write", "/v1/payments", "refunds.create"),  # only .../refunds is checked below
    ("read", "/v1/statements", "statements.read"),
    ("read", "/v1/payouts", "payouts.read"),
    ("write", "/v1/payouts", "payouts.create"),
    ("read", "/v1/webhook-endpoints", "webhooks.manage"),  # the endpoints' secrets are a developer's matter
    ("write", "/v1/webhook-endpoints", "webhooks.manage"),
    ("read", "/v1/payment-links", "payments.read"),
    ("write", "/v1/payment-links", "payment_links.manage"),
    ("read", "/v1/wallet/merchants", "statements.read"),  # the ledger's balances of the member's own merchant
    ("read", "/v1/marketing/campaigns", "coupons.read"),
    ("write", "/v1/marketing/campaigns", "coupons.manage"),
    ("read", "/v1/marketing/stocks", "coupons.read"),
    ("write", "/v1/marketing/stocks", "coupons.manage"),
    ("write", "/v1/marketing/in-store", "coupons.redeem"),
    ("read", "/v1/admin/merchants", "platform.merchants.read"),
    ("write", "/v1/admin/merchants", "platform.merchants.manage"),
    ("read", "/v1/kyc", "platform.wallets.read"),
    ("write", "/v1/kyc", "platform.kyc.review"),
    ("read", "/v1/merchant-profiles", "platform.merchants.read"),
    ("write", "/v1/merchant-profiles", "platform.merchants.manage"),
    ("read", "/v1/channel-routes", "platform.routing.read"),
    ("write", "/v1/channel-routes", "platform.routing.manage"),
    ("read", "/v1/contracts", "platform.routing.read"),
    ("write", "/v1/contracts", "platform.routing.manage"),
    ("read", "/v1/fee-rates", "platform.routing.read"),
    ("write", "/v1/fee-rates", "platform.routing.manage"),
    ("read", "/v1/rules", "platform.routing.read"),
    ("write", "/v1/rules", "platform.routing.manage"),
    ("read", "/v1/routing-settings", "platform.routing.read"),
    ("read", "/v1/special-rate-programmes", "platform.merchants.read"),  # the catalogue, beside eligibility
    ("read", "/v1/special-rate-applications", "platform.merchants.read"),
    ("write", "/v1/special-rate-applications", "platform.merchants.manage"),
    ("read", "/v1/special-rate-savings", "platform.routing.read"),
    ("read", "/v1/routing-simulations", "platform.routing.read"),
    ("read", "/v1/settlement", "platform.settlement.read"),
    ("write", "/v1/settlement", "platform.settlement.manage"),
    ("read", "/v1/settlement/reconciliation-items", "platform.reconciliation.read"),
    ("read", "/v1/settlement/reconciliation-exceptions", "platform.reconciliation.read"),
    ("write", "/v1/settlement/reconciliation-exceptions", "platform.reconciliation.resolve"),
    ("read", "/v1/accounts", "platform.ledger.read"),
    ("read", "/v1/wallet", "platform.wallets.read"),
    ("read", "/v1/audit", "platform.audit.read"),
)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def api_permission(method: str, path: str) -> str | None:
    """The permission a staff session needs for `method path` of the public API, or None: not for staff."""
    reading = method.upper() in ("GET", "HEAD", "OPTIONS")
    if not reading and _under(path, "/v1/payments") and not path.endswith("/refunds"):
        return None  # staff never create, close or confirm payments
    if not reading and _under(path, "/v1/accounts"):  # an operator freezes or unfreezes, never opens or closes
        return "platform.wallets.manage" if path.endswith(("/freeze", "/unfreeze")) else None
    klass = "read" if reading else "write"
    best: tuple[str, str] | None = None
    for rule_class, prefix, permission in _API_RULES:
        if rule_class == klass and _under(path, prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, permission)
    return best[1] if best else None


def authorize_staff(principal: Principal, method: str, path: str) -> None:
    """A console session calls the public API only where its role has the permission the path needs."""
    if principal.permissions is None:
        return
    needed = api_permission(method, path)
    if needed is None or needed not in principal.permissions:
        raise Problem(ROUTE_FORBIDDEN, f"a console session may not call {method} {path} with its role")


CONSOLE_MODE_HEADER = "Juhe-Mode"


def with_console_mode(principal: Principal, requested: str | None) -> Principal:
    """A console session's call in the mode the console chose (`Juhe-Mode: test|live`), forwarded in the signed
    identity like a key's mode, so what the page makes (a payment link, a webhook endpoint) has that mode and the
    lists it reads hold that mode only (docs/test-mode.md). A session has no key mode of its own, so naming one
    only narrows it; an API key's mode is its own and the header changes nothing for it (nor for a user token),
    so a public client never sets a mode. Without the header a session keeps no mode (both, each object marked)."""
    if principal.staff_id is None or requested is None:
        return principal
    if requested not in MODES:
        error = {"loc": ["header", CONSOLE_MODE_HEADER], "msg": "test or live", "type": "enum"}
        raise Problem(VALIDATION_FAILED, f"{CONSOLE_MODE_HEADER} is test or live", errors=[error])
    return replace(principal, mode=requested)


# ---- passwords -------------------------------------------------------------------------------------------
PASSWORD_LENGTH_MIN = 12
PASSWORD_LENGTH_MAX = 128
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# Verified when the e-mail is unknown, so an unknown address costs the same time as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


def password_problem(password: str, email: str) -> str | None:
    """Why a new password is refused (a stable reason), or None. Length is what counts (NIST SP 800-63B)."""
    if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
        return "length"
    if len(set(password)) < 5 or email.split("@")[0].lower() in password.lower():
        return "guessable"
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(password: str, password_hash: str | None) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# ---- lockout -----------------------------------------------------------------------------------------------
SIGN_IN_TRIES_MAX = 5


@dataclass(frozen=True, slots=True)
class SignInState:
    failed_count: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def after_failure(self, now: datetime, lockout_seconds: int) -> SignInState:
        """One more wrong password or code; the `SIGN_IN_TRIES_MAX`th in a row locks the account for a while."""
        failed = self.failed_count + 1
        if failed >= SIGN_IN_TRIES_MAX:
            return SignInState(0, now + timedelta(seconds=lockout_seconds))
        return SignInState(failed, None)


# ---- TOTP (RFC 6238) and recovery codes -----------------------------------------------------------------------
TOTP_ISSUER = "Juhe"
TOTP_STEP_SECONDS = 30
RECOVERY_CODES = 10


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def totp_step(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> int | None:
    """The time step `code` belongs to (this one or its neighbours, for clock drift), or None. A step at or before
    `last_step` is refused: a code seen once (over a shoulder, in a replayed form) does not work again."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    at = time.time() if now is None else now
    current = int(at // TOTP_STEP_SECONDS)
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP_SECONDS), code) and (last_step is None or step > last_step):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten one-time codes, 50 bits each (xxxxx-xxxxx, base32), shown once; only their SHA-256 is kept."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    codes = ("".join(secrets.choice(alphabet) for _ in range(10)) for _ in range(RECOVERY_CODES))
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def recovery_code_hash(code: str) -> bytes:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).digest()
