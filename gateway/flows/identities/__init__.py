"""Identities: authenticating callers, and the platform's operations on merchants, keys and users.

`Identities` is the one object routes talk to, composed of one part per resource: `authentication.py`
(who is calling), `keys.py` (API keys), `merchants.py` (platforms, merchants, API version pins),
`users.py` (users and their tokens), over the state they share (`base.py`: settings, sealer, caches).
"""

from __future__ import annotations

from gateway.flows.identities.authentication import (
    ON_BEHALF_HEADER,
    STAFF_SESSION_PREFIX,
    Authenticated,
    Authentication,
    SignedNonce,
)
from gateway.flows.identities.base import KeyRecord
from gateway.flows.identities.merchants import WEBHOOK_SECRET_PREFIX, Merchants
from gateway.flows.identities.users import USER_TOKEN_PREFIX, Users

__all__ = [
    "ON_BEHALF_HEADER",
    "STAFF_SESSION_PREFIX",
    "USER_TOKEN_PREFIX",
    "WEBHOOK_SECRET_PREFIX",
    "Authenticated",
    "Identities",
    "KeyRecord",
    "SignedNonce",
]


class Identities(Authentication, Merchants, Users):
    """Authentication, keys, merchants and users over one unit of work and one set of caches."""
