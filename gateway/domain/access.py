"""Who is calling, where the call goes, and whether that identity may make it. Pure rules, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.domain.errors import ROUTE_FORBIDDEN
from libs.common.errors import ROUTE_NOT_FOUND, Problem
from libs.common.modes import Mode

PrincipalKind = Literal["merchant", "platform", "user"]
RouteClass = Literal["read", "write", "admin"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `merchant_id` is the scope services filter by (None: all of a platform)."""

    kind: PrincipalKind
    key_id: str
    platform_id: str
    merchant_id: str | None = None
    user_id: str | None = None
    # A console session (Bearer cst_…): the member and their role's permissions, checked on every call
    # (`gateway.domain.staff.authorize_staff`). None for API keys and user tokens.
    staff_id: str | None = None
    permissions: frozenset[str] | None = None
    # The authenticating API key's mode (test | live), forwarded inside the signed identity so services keep
    # test and live apart (docs/test-mode.md). None for user tokens and console sessions.
    mode: Mode | None = None

    @property
    def scope(self) -> str:
        """Whose idempotency keys these are: a merchant's keys survive rotation of its API keys."""
        if self.kind == "user":
            return f"user:{self.user_id}"
        if self.kind == "merchant":
            return f"merchant:{self.merchant_id}"
        return f"platform:{self.platform_id}:{self.merchant_id or '*'}"


def has_prefix(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


class PrefixIndex:
    """Longest-prefix matching on "/" boundaries by dictionary lookups of the path's ancestors.

    The same answers as `match_prefix` over a list (tested against it), built once at start-up: the gateway
    asks several of these per request, and a scan of every prefix was a visible share of its CPU.
    """

    __slots__ = ("_by_normalized",)

    def __init__(self, prefixes: Iterable[str]) -> None:
        by_normalized: dict[str, list[str]] = {}
        for prefix in prefixes:
            by_normalized.setdefault(prefix.rstrip("/"), []).append(prefix)
        self._by_normalized = by_normalized

    def match(self, path: str) -> str | None:
        # Every prefix that matches has its "/"-stripped form among the path's ancestors (cut at each "/").
        best: str | None = None
        candidate = path
        while True:
            for prefix in self._by_normalized.get(candidate, ()):
                if has_prefix(path, prefix) and (best is None or len(prefix) > len(best)):
                    best = prefix
            cut = candidate.rfind("/")
            if cut < 0:
                return best
            candidate = candidate[:cut]


Prefixes = Iterable[str] | PrefixIndex


def match_prefix(path: str, prefixes: Prefixes) -> str | None:
    if isinstance(prefixes, PrefixIndex):
        return prefixes.match(path)
    best: str | None = None
    for prefix in prefixes:
        if has_prefix(path, prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def resolve_service(
    path: str, routes: Mapping[str, str], internal_prefixes: Prefixes, route_index: PrefixIndex | None = None
) -> str:
    """The service that serves `path`; `route_not_found` for unknown and service-internal paths."""
    if match_prefix(path, internal_prefixes) is not None:
        raise Problem(ROUTE_NOT_FOUND, "No such endpoint")
    prefix = match_prefix(path, route_index if route_index is not None else routes)
    if prefix is None:
        raise Problem(ROUTE_NOT_FOUND, "No such endpoint")
    return routes[prefix]


def route_class(method: str, path: str, platform_only_prefixes: Prefixes) -> RouteClass:
    if match_prefix(path, platform_only_prefixes) is not None:
        return "admin"
    return "read" if method.upper() in READ_METHODS else "write"


def authorize(principal: Principal, path: str, *, platform_only_prefixes: Prefixes, user_prefixes: Prefixes) -> None:
    if principal.kind == "platform":
        return
    if match_prefix(path, platform_only_prefixes) is not None:
        raise Problem(ROUTE_FORBIDDEN, "only platform operators may call this endpoint")
    if principal.kind == "user" and match_prefix(path, user_prefixes) is None:
        raise Problem(ROUTE_FORBIDDEN, "end-user tokens may not call this endpoint")
