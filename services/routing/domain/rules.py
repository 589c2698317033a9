"""Routing rules: conditions on the payment, actions on the routes.

Semantics (stated once, relied on by decide and by the admin UI):
- A rule applies when it is enabled, its scope fits (platform rules apply to every merchant, merchant
  rules to their merchant only) and *every* condition it sets holds (unset = any).
- Filters accumulate over all applicable rules, in any order: `deny` removes its routes; `allow`
  restricts to its routes (several allows intersect). A route denied by any rule stays denied.
- Preferences (`force`, `split`) do not accumulate: the first applicable one wins, looking at
  merchant rules before platform rules (the more specific owner decides), each in ascending
  `priority` then `rule_id`. `force` puts its route first (and with `exclusive`, only it); `split`
  chooses the first route among its routes by weight, deterministically per payment id.
- A preference never resurrects a route a filter removed, nor one that is unhealthy or ineligible;
  it then falls back to the next choice.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.routing.domain.errors import FieldError
from services.routing.domain.model import (
    CURRENCY_RE,
    INDUSTRY_RE,
    MERCHANT_ID_MAX_LENGTH,
    LocalTime,
    Method,
    PayerClient,
    PaymentContext,
    Scene,
    TimeWindow,
)

SPLIT_WEIGHT_MAX = 1_000_000
SPLIT_ROUTES_MAX = 16
RULE_ROUTES_MAX = 64
RULE_LIST_MAX = 100  # values in one condition list
PRIORITY_MAX = 1_000_000


class RuleScope(enum.StrEnum):
    PLATFORM = "platform"
    MERCHANT = "merchant"


class ActionKind(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    FORCE = "force"
    SPLIT = "split"


@dataclass(frozen=True, slots=True)
class Conditions:
    amount_min_minor: int | None = None  # inclusive
    amount_max_minor: int | None = None  # inclusive
    currencies: frozenset[str] | None = None
    methods: frozenset[Method] | None = None
    scenes: frozenset[Scene] | None = None
    payer_clients: frozenset[PayerClient] | None = None
    merchant_ids: frozenset[str] | None = None
    industries: frozenset[str] | None = None
    time_of_day: TimeWindow | None = None  # local time, optional weekdays

    def match(self, ctx: PaymentContext, local: LocalTime) -> bool:
        return not self.mismatches(ctx, local, first_only=True)

    def mismatches(self, ctx: PaymentContext, local: LocalTime, *, first_only: bool = False) -> list[str]:
        """Names of the conditions that do not hold; empty when the rule matches."""
        checks: list[tuple[str, bool]] = [
            ("amount_min_minor", self.amount_min_minor is None or ctx.amount_minor >= self.amount_min_minor),
            ("amount_max_minor", self.amount_max_minor is None or ctx.amount_minor <= self.amount_max_minor),
            ("currencies", self.currencies is None or ctx.currency in self.currencies),
            ("methods", self.methods is None or ctx.method in self.methods),
            ("scenes", self.scenes is None or ctx.scene in self.scenes),
            ("payer_clients", self.payer_clients is None or ctx.payer_client in self.payer_clients),
            ("merchant_ids", self.merchant_ids is None or ctx.merchant_id in self.merchant_ids),
            ("industries", self.industries is None or ctx.industry in self.industries),
            ("time_of_day", self.time_of_day is None or self.time_of_day.contains(local)),
        ]
        failed: list[str] = []
        for name, ok in checks:
            if not ok:
                failed.append(name)
                if first_only:
                    break
        return failed


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    route_ids: tuple[str, ...] = ()  # allow / deny: the routes; force: exactly one
    weights: tuple[tuple[str, int], ...] = ()  # split: (route_id, weight) in a stable order
    exclusive: bool = False  # force only: no fallback to other routes


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    name: str
    scope: RuleScope
    priority: int
    conditions: Conditions
    action: Action
    merchant_id: str | None = None  # required for merchant scope, absent for platform scope
    enabled: bool = True
    version: int = 1

    def applies_to_merchant(self, merchant_id: str) -> bool:
        return self.scope is RuleScope.PLATFORM or self.merchant_id == merchant_id

    def referenced_route_ids(self) -> set[str]:
        return set(self.action.route_ids) | {route_id for route_id, _ in self.action.weights}


def validate_rule(rule: Rule, known_route_ids: Iterable[str]) -> list[FieldError]:
    """Every reason the rule cannot be saved. `known_route_ids` are the routes that exist now."""
    known = set(known_route_ids)
    errors: list[FieldError] = []
    if not rule.name or len(rule.name) > 200:
        errors.append(FieldError("name", "required, at most 200 characters"))
    if not 0 <= rule.priority <= PRIORITY_MAX:
        errors.append(FieldError("priority", f"must be between 0 and {PRIORITY_MAX}"))
    if rule.scope is RuleScope.MERCHANT and not rule.merchant_id:
        errors.append(FieldError("merchant_id", "required for a merchant rule"))
    if rule.scope is RuleScope.PLATFORM and rule.merchant_id is not None:
        errors.append(FieldError("merchant_id", "a platform rule has no merchant_id; use conditions.merchant_ids"))
    if rule.merchant_id is not None and len(rule.merchant_id) > MERCHANT_ID_MAX_LENGTH:
        errors.append(FieldError("merchant_id", f"at most {MERCHANT_ID_MAX_LENGTH} characters"))
    errors.extend(_validate_conditions(rule.conditions))
    errors.extend(_validate_action(rule.action, known))
    return errors


def _validate_conditions(c: Conditions) -> list[FieldError]:
    errors: list[FieldError] = []
    for name in ("amount_min_minor", "amount_max_minor"):
        value = getattr(c, name)
        if value is not None and value < 1:
            errors.append(FieldError(f"conditions.{name}", "must be at least 1"))
    if c.amount_min_minor is not None and c.amount_max_minor is not None and c.amount_max_minor < c.amount_min_minor:
        errors.append(FieldError("conditions.amount_max_minor", "must be at least amount_min_minor"))
    for name in ("currencies", "methods", "scenes", "payer_clients", "merchant_ids", "industries"):
        values = getattr(c, name)
        if values is not None and not 0 < len(values) <= RULE_LIST_MAX:
            errors.append(FieldError(f"conditions.{name}", f"omit it for any, or list 1–{RULE_LIST_MAX} values"))
    for currency in sorted(c.currencies or ()):
        if not CURRENCY_RE.match(currency):
            errors.append(FieldError("conditions.currencies", f"{currency!r} is not an ISO 4217 code"))
    for industry in sorted(c.industries or ()):
        if not INDUSTRY_RE.match(industry):
            errors.append(FieldError("conditions.industries", f"{industry!r} is not an industry code"))
    if c.time_of_day is not None:
        errors.extend(c.time_of_day.validate("conditions.time_of_day"))
    return errors


def _validate_action(a: Action, known: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    if a.kind in (ActionKind.ALLOW, ActionKind.DENY, ActionKind.FORCE):
        if a.weights:
            errors.append(FieldError("action.weights", f"only a split action has weights, not {a.kind}"))
        if a.kind is ActionKind.FORCE and len(a.route_ids) != 1:
            errors.append(FieldError("action.route_ids", "a force action names exactly one route"))
        elif not 0 < len(a.route_ids) <= RULE_ROUTES_MAX:
            errors.append(FieldError("action.route_ids", f"list 1–{RULE_ROUTES_MAX} routes"))
        if len(set(a.route_ids)) != len(a.route_ids):
            errors.append(FieldError("action.route_ids", "a route is listed twice"))
    if a.kind is ActionKind.SPLIT:
        if a.route_ids:
            errors.append(FieldError("action.route_ids", "a split action lists its routes in weights"))
        if not 2 <= len(a.weights) <= SPLIT_ROUTES_MAX:
            errors.append(FieldError("action.weights", f"a split needs 2–{SPLIT_ROUTES_MAX} routes"))
        seen: set[str] = set()
        for route_id, weight in a.weights:
            if route_id in seen:
                errors.append(FieldError("action.weights", f"route {route_id!r} is listed twice"))
            seen.add(route_id)
            if not 1 <= weight <= SPLIT_WEIGHT_MAX:
                errors.append(FieldError(f"action.weights.{route_id}", f"weight must be 1–{SPLIT_WEIGHT_MAX}"))
    if a.exclusive and a.kind is not ActionKind.FORCE:
        errors.append(FieldError("action.exclusive", "only a force action can be exclusive"))
    for route_id in sorted(set(a.route_ids) | {r for r, _ in a.weights}):
        if route_id not in known:
            errors.append(FieldError("action", f"unknown route {route_id!r}"))
    return errors


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What the applicable rules say about one payment."""

    matched_rule_ids: tuple[str, ...]
    allowed: frozenset[str] | None  # None: no allow-list applies
    allow_rule_ids: tuple[str, ...]
    denied_by: Mapping[str, str]  # route_id → the first rule that denied it
    preference: Rule | None  # the force/split rule that decides the first choice

    @classmethod
    def empty(cls) -> RuleOutcome:
        return cls((), None, (), {}, None)


def ordered_rules(rules: Iterable[Rule], merchant_id: str) -> list[Rule]:
    """Applicable rules in evaluation order: platform then merchant, each by (priority, rule_id)."""
    applicable = [r for r in rules if r.enabled and r.applies_to_merchant(merchant_id)]
    return sorted(applicable, key=lambda r: (r.scope is RuleScope.MERCHANT, r.priority, r.rule_id))


def evaluate_rules(rules: Iterable[Rule], ctx: PaymentContext, local: LocalTime) -> RuleOutcome:
    matched: list[Rule] = [r for r in ordered_rules(rules, ctx.merchant_id) if r.conditions.match(ctx, local)]
    allowed: frozenset[str] | None = None
    allow_ids: list[str] = []
    denied_by: dict[str, str] = {}
    for rule in matched:
        if rule.action.kind is ActionKind.ALLOW:
            routes = frozenset(rule.action.route_ids)
            allowed = routes if allowed is None else allowed & routes
            allow_ids.append(rule.rule_id)
        elif rule.action.kind is ActionKind.DENY:
            for route_id in rule.action.route_ids:
                denied_by.setdefault(route_id, rule.rule_id)
    preferences = [r for r in matched if r.action.kind in (ActionKind.FORCE, ActionKind.SPLIT)]
    preferences.sort(key=lambda r: (r.scope is not RuleScope.MERCHANT, r.priority, r.rule_id))
    return RuleOutcome(
        matched_rule_ids=tuple(r.rule_id for r in matched),
        allowed=allowed,
        allow_rule_ids=tuple(allow_ids),
        denied_by=denied_by,
        preference=preferences[0] if preferences else None,
    )


# --- plain-data form, for storage (JSONB) and the API ------------------------------------------------


def conditions_to_dict(c: Conditions) -> dict[str, Any]:
    def many(values: frozenset[Any] | None) -> list[str] | None:
        return None if values is None else sorted(str(v) for v in values)

    return {
        "amount_min_minor": c.amount_min_minor,
        "amount_max_minor": c.amount_max_minor,
        "currencies": many(c.currencies),
        "methods": many(c.methods),
        "scenes": many(c.scenes),
        "payer_clients": many(c.payer_clients),
        "merchant_ids": many(c.merchant_ids),
        "industries": many(c.industries),
        "time_of_day": None if c.time_of_day is None else c.time_of_day.as_dict(),
    }


def conditions_from_dict(raw: Mapping[str, Any]) -> Conditions:
    """Build Conditions from stored/API data; raises ValueError on values outside the enums."""

    def many(name: str, convert: Any = str) -> frozenset[Any] | None:
        values: Sequence[Any] | None = raw.get(name)
        return None if values is None else frozenset(convert(v) for v in values)

    window = raw.get("time_of_day")
    return Conditions(
        amount_min_minor=raw.get("amount_min_minor"),
        amount_max_minor=raw.get("amount_max_minor"),
        currencies=many("currencies"),
        methods=many("methods", Method),
        scenes=many("scenes", Scene),
        payer_clients=many("payer_clients", PayerClient),
        merchant_ids=many("merchant_ids"),
        industries=many("industries"),
        time_of_day=None if window is None else TimeWindow.from_dict(window),
    )


def action_to_dict(a: Action) -> dict[str, Any]:
    return {
        "kind": a.kind.value,
        "route_ids": list(a.route_ids),
        "weights": {route_id: weight for route_id, weight in a.weights},
        "exclusive": a.exclusive,
    }


def action_from_dict(raw: Mapping[str, Any]) -> Action:
    weights = raw.get("weights") or {}
    return Action(
        kind=ActionKind(raw["kind"]),
        route_ids=tuple(raw.get("route_ids") or ()),
        weights=tuple((str(route_id), int(weight)) for route_id, weight in weights.items()),
        exclusive=bool(raw.get("exclusive", False)),
    )


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """The editable part of a rule, as an admin submits it (ids and versions are assigned by the store)."""

    name: str
    scope: RuleScope
    priority: int
    conditions: Conditions
    action: Action
    merchant_id: str | None = None
    enabled: bool = True

    def to_rule(self, rule_id: str, version: int) -> Rule:
        return Rule(
            rule_id=rule_id,
            name=self.name,
            scope=self.scope,
            priority=self.priority,
            conditions=self.conditions,
            action=self.action,
            merchant_id=self.merchant_id,
            enabled=self.enabled,
            version=version,
        )


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    return {
        "rule_id": rule.rule_id,
        "name": rule.name,
        "scope": rule.scope.value,
        "merchant_id": rule.merchant_id,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "conditions": conditions_to_dict(rule.conditions),
        "action": action_to_dict(rule.action),
        "version": rule.version,
    }
