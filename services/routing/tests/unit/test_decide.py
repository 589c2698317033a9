from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from libs.common.errors import Problem
from services.routing.domain.decide import (
    Placement,
    RouteHealth,
    RoutingSettings,
    SkipReason,
    decide,
)
from services.routing.domain.health import Breaker, CircuitState, HealthPolicy, Outcome, OutcomeCounts, on_outcome
from services.routing.domain.model import Contract, Method, PayerClient, RouteKind, Scene, TimeWindow, parse_hhmm
from services.routing.domain.rules import Action, ActionKind, Conditions, Rule, RuleScope
from services.routing.tests.unit.builders import MERCHANT, T0, payment, rate, route, snapshot

ROUTES = [
    route("wx_direct", kind=RouteKind.DIRECT),
    route("wx_allinpay"),
    route("wx_lianlian"),
    route("ali_direct", Method.ALIPAY),
]
RATES = [rate("wx_direct", 60), rate("wx_allinpay", 38), rate("wx_lianlian", 45), rate("ali_direct", 60)]


def order(decision) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.route_id for c in decision.candidates]


def skipped(decision) -> dict[str, SkipReason]:  # type: ignore[no-untyped-def]
    return {s.route_id: s.reason for s in decision.skipped}


def test_the_cheapest_healthy_route_wins_and_every_rank_is_explained() -> None:
    decision = decide(payment(amount_minor=10_000), snapshot(ROUTES, RATES), T0)
    assert order(decision) == ["wx_allinpay", "wx_lianlian", "wx_direct"]
    assert [c.fee.fee_minor for c in decision.candidates] == [38, 45, 60]
    assert skipped(decision) == {"ali_direct": SkipReason.METHOD_MISMATCH}
    first = decision.candidates[0]
    assert first.sub_merchant_id == "sub_wx_allinpay" and first.fee.rate_id == "fr_wx_allinpay_38"
    assert "7.0 bps below wx_lianlian" in first.explanation and "fee 38 fen" in first.explanation
    assert decision.config_version == 7


def test_an_industry_rate_on_the_merchants_contract_changes_the_winner() -> None:
    rates = [*RATES, rate("wx_lianlian", 20, rate_id="fr_edu", industry="education")]
    contracts = [Contract(MERCHANT, r.route_id, f"sub_{r.route_id}") for r in ROUTES if r.route_id != "wx_lianlian"]
    contracts.append(Contract(MERCHANT, "wx_lianlian", "sub_ll", industry="education"))
    decision = decide(payment(), snapshot(ROUTES, rates, contracts=contracts), T0)
    assert order(decision)[0] == "wx_lianlian"
    assert decision.candidates[0].fee.rate_id == "fr_edu" and decision.candidates[0].fee.basis == "industry"


def test_a_route_over_its_daily_cap_is_skipped_and_one_that_just_fits_is_not() -> None:
    routes = [replace(r, daily_volume_cap_minor=1_000_000) if r.route_id == "wx_allinpay" else r for r in ROUTES]
    over = decide(payment(amount_minor=10_000), snapshot(routes, RATES, volume={"wx_allinpay": 990_001}), T0)
    assert skipped(over)["wx_allinpay"] is SkipReason.DAILY_CAP_REACHED
    assert order(over) == ["wx_lianlian", "wx_direct"]
    fits = decide(payment(amount_minor=10_000), snapshot(routes, RATES, volume={"wx_allinpay": 990_000}), T0)
    assert order(fits)[0] == "wx_allinpay"


def test_a_route_outside_its_opening_hours_is_skipped() -> None:
    night_only = (TimeWindow(parse_hhmm("22:00"), parse_hhmm("06:00")),)
    routes = [replace(r, opening_hours=night_only) if r.route_id == "wx_allinpay" else r for r in ROUTES]
    noon = decide(payment(), snapshot(routes, RATES), T0)  # 12:00 Beijing
    assert skipped(noon)["wx_allinpay"] is SkipReason.OUTSIDE_OPENING_HOURS
    night = decide(payment(), snapshot(routes, RATES), T0 + timedelta(hours=11))  # 23:00 Beijing
    assert order(night)[0] == "wx_allinpay"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"scene": Scene.B2B}, SkipReason.SCENE_NOT_SUPPORTED),
        ({"currency": "HKD"}, SkipReason.CURRENCY_MISMATCH),
        ({"amount_minor": 4}, SkipReason.AMOUNT_BELOW_MIN),
        ({"amount_minor": 600_000}, SkipReason.AMOUNT_ABOVE_MAX),
        ({"payer_client": PayerClient.ALIPAY}, SkipReason.PAYER_CLIENT_NOT_SUPPORTED),
        ({"exclude_route_ids": frozenset({"wx_allinpay"})}, SkipReason.EXCLUDED_BY_REQUEST),
    ],
)
def test_each_eligibility_check_skips_with_its_reason(change: dict[str, object], reason: SkipReason) -> None:
    picky = replace(
        ROUTES[1],
        scenes=frozenset({Scene.JSAPI}),
        amount_min_minor=5,
        amount_max_minor=500_000,
        payer_clients=frozenset({PayerClient.WECHAT}),
    )
    decision = decide(payment(**change), snapshot([picky], RATES), T0)  # type: ignore[arg-type]
    assert skipped(decision) == {"wx_allinpay": reason}
    assert decision.candidates == ()


def test_disabled_routes_missing_contracts_and_missing_rates_are_skipped() -> None:
    routes = [replace(ROUTES[0], enabled=False), ROUTES[1], ROUTES[2]]
    contracts = [Contract(MERCHANT, "wx_direct", "s1"), Contract(MERCHANT, "wx_allinpay", "s2", enabled=False)]
    decision = decide(payment(), snapshot(routes, RATES[:1], contracts=contracts), T0)
    assert skipped(decision) == {
        "wx_direct": SkipReason.DISABLED,
        "wx_allinpay": SkipReason.CONTRACT_DISABLED,
        "wx_lianlian": SkipReason.NO_CONTRACT,
    }
    no_rate = decide(payment(), snapshot(ROUTES[:2], RATES[:1]), T0)
    assert skipped(no_rate)["wx_allinpay"] is SkipReason.NO_FEE_RATE


def _open_breaker(at) -> Breaker:  # type: ignore[no-untyped-def]
    breaker = Breaker()
    for i in range(5):
        breaker, _ = on_outcome(breaker, Outcome.ERROR, at + timedelta(milliseconds=i), HealthPolicy())
    assert breaker.state is CircuitState.OPEN
    return breaker


def test_circuit_opens_traffic_fails_over_then_half_open_probes_and_recovery() -> None:
    policy = HealthPolicy()
    breaker = _open_breaker(T0)
    snap = lambda b: snapshot(ROUTES, RATES, health={"wx_allinpay": RouteHealth(breaker=b)})  # noqa: E731

    during = decide(payment(), snap(breaker), T0 + timedelta(seconds=1))
    assert skipped(during)["wx_allinpay"] is SkipReason.CIRCUIT_OPEN
    assert order(during) == ["wx_lianlian", "wx_direct"]

    half_open_at = T0 + timedelta(seconds=policy.open_seconds + 1)
    placements: Counter[str] = Counter()
    probe_ids = []
    for i in range(1_000):
        d = decide(payment(f"pay_{i}"), snap(breaker), half_open_at)
        allinpay = next(c for c in d.candidates if c.route_id == "wx_allinpay")
        assert allinpay.circuit_state is CircuitState.HALF_OPEN
        placements[allinpay.placement] += 1
        if allinpay.placement is Placement.PROBE:
            assert allinpay.rank == 1
            probe_ids.append(f"pay_{i}")
        else:
            assert allinpay.placement is Placement.LAST_RESORT and allinpay.rank == len(d.candidates)
    assert 150 <= placements[Placement.PROBE] <= 250  # 20 % probe ratio

    for i, _ in enumerate(probe_ids[: policy.half_open_successes_to_close]):
        breaker, _ = on_outcome(breaker, Outcome.SUCCEEDED, half_open_at + timedelta(seconds=i), policy)
    assert breaker.state is CircuitState.CLOSED
    recovered = decide(payment(), snap(breaker), half_open_at + timedelta(seconds=10))
    assert order(recovered)[0] == "wx_allinpay"


def test_a_falling_success_rate_moves_traffic_to_a_dearer_but_reliable_route() -> None:
    degraded = RouteHealth(recent=OutcomeCounts(attempts=200, succeeded=120, errors=80))
    decision = decide(payment(), snapshot(ROUTES, RATES, health={"wx_allinpay": degraded}), T0)
    assert order(decision) == ["wx_lianlian", "wx_direct", "wx_allinpay"]
    assert "success rate 63.2%" in decision.candidates[2].explanation


def _rule(
    rule_id: str,
    action: Action,
    *,
    scope: RuleScope = RuleScope.PLATFORM,
    conditions: Conditions | None = None,
    merchant_id: str | None = None,
) -> Rule:
    return Rule(rule_id, rule_id, scope, 10, conditions or Conditions(), action, merchant_id=merchant_id)


def test_deny_and_allow_rules_filter_routes() -> None:
    deny = _rule("rul_deny", Action(ActionKind.DENY, ("wx_allinpay",)))
    decision = decide(payment(), snapshot(ROUTES, RATES, rules=[deny]), T0)
    assert skipped(decision)["wx_allinpay"] is SkipReason.DENIED_BY_RULE
    assert order(decision) == ["wx_lianlian", "wx_direct"]
    assert decision.matched_rule_ids == ("rul_deny",)
    allow = _rule("rul_allow", Action(ActionKind.ALLOW, ("wx_direct",)), conditions=Conditions(amount_min_minor=50_000))
    big = decide(payment(amount_minor=50_000), snapshot(ROUTES, RATES, rules=[allow]), T0)
    assert order(big) == ["wx_direct"]
    small = decide(payment(amount_minor=49_999), snapshot(ROUTES, RATES, rules=[allow]), T0)
    assert order(small) == ["wx_allinpay", "wx_lianlian", "wx_direct"]


def test_force_puts_its_route_first_and_exclusive_force_leaves_only_it() -> None:
    force = _rule("rul_force", Action(ActionKind.FORCE, ("wx_direct",)))
    decision = decide(payment(), snapshot(ROUTES, RATES, rules=[force]), T0)
    assert order(decision) == ["wx_direct", "wx_allinpay", "wx_lianlian"]
    assert decision.candidates[0].placement is Placement.FORCED
    only = _rule("rul_only", Action(ActionKind.FORCE, ("wx_direct",), exclusive=True))
    decision = decide(payment(), snapshot(ROUTES, RATES, rules=[only]), T0)
    assert order(decision) == ["wx_direct"]
    assert skipped(decision)["wx_allinpay"] is SkipReason.FORCED_ELSEWHERE
    # A forced route that cannot take the payment is not resurrected.
    denied = _rule("rul_deny", Action(ActionKind.DENY, ("wx_direct",)))
    decision = decide(payment(), snapshot(ROUTES, RATES, rules=[force, denied]), T0)
    assert order(decision) == ["wx_allinpay", "wx_lianlian"]


def test_a_70_30_split_lands_within_3_percent_over_10000_payments_and_retries_move_on() -> None:
    split = _rule(
        "rul_split",
        Action(ActionKind.SPLIT, weights=(("wx_direct", 70), ("wx_lianlian", 30))),
        scope=RuleScope.MERCHANT,
        merchant_id=MERCHANT,
    )
    snap = snapshot(ROUTES, RATES, rules=[split])
    firsts = Counter(order(decide(payment(f"pay_{i:05d}"), snap, T0))[0] for i in range(10_000))
    assert abs(firsts["wx_direct"] / 10_000 - 0.7) <= 0.03
    assert abs(firsts["wx_lianlian"] / 10_000 - 0.3) <= 0.03
    assert set(firsts) == {"wx_direct", "wx_lianlian"}
    d = decide(payment("pay_00001"), snap, T0)
    assert d.candidates[0].placement is Placement.SPLIT and "split rule rul_split" in d.candidates[0].explanation
    retry = decide(payment("pay_00001", exclude_route_ids=frozenset({order(d)[0]})), snap, T0)
    other = ({"wx_direct", "wx_lianlian"} - {order(d)[0]}).pop()
    assert order(retry)[0] == other and "renormalised" in retry.candidates[0].explanation


def test_the_same_inputs_give_the_same_decision_whatever_the_order_of_the_data() -> None:
    split = _rule("rul_split", Action(ActionKind.SPLIT, weights=(("wx_allinpay", 1), ("wx_lianlian", 1))))
    health = {
        "wx_direct": RouteHealth(
            recent=OutcomeCounts(attempts=50, succeeded=49, latency_ms_sum=9_000, latency_samples=50)
        )
    }
    one = snapshot(ROUTES, RATES, rules=[split], health=health)
    two = snapshot(list(reversed(ROUTES)), list(reversed(RATES)), rules=[split], health=dict(health))
    for i in range(200):
        assert decide(payment(f"pay_{i}"), one, T0) == decide(payment(f"pay_{i}"), two, T0)


def test_no_candidates_raise_the_right_catalogue_error() -> None:
    nothing = decide(payment(), snapshot(ROUTES, RATES, contracts=[]), T0)
    with pytest.raises(Problem) as no_route:
        nothing.require_candidates()
    assert no_route.value.spec.code == "no_route_available" and no_route.value.spec.status == 422
    health = {r.route_id: RouteHealth(breaker=_open_breaker(T0)) for r in ROUTES}
    all_open = decide(payment(), snapshot(ROUTES, RATES, health=health), T0 + timedelta(seconds=1))
    with pytest.raises(Problem) as unavailable:
        all_open.require_candidates()
    assert unavailable.value.spec.code == "channel_unavailable" and unavailable.value.spec.retryable
    assert {s["reason"] for s in unavailable.value.extensions["skipped"]} == {"circuit_open", "method_mismatch"}
    decide(payment(), snapshot(ROUTES, RATES), T0).require_candidates()  # does not raise


def test_candidates_are_capped() -> None:
    settings = RoutingSettings(candidates_max=2)
    decision = decide(payment(), snapshot(ROUTES, RATES, settings=settings), T0)
    assert order(decision) == ["wx_allinpay", "wx_lianlian"]
    assert skipped(decision)["wx_direct"] is SkipReason.BEYOND_CANDIDATES_MAX


def test_settings_validation() -> None:
    assert RoutingSettings().validate() == []
    assert {e.field for e in RoutingSettings(candidates_max=0, utc_offset_minutes=2000).validate()} == {
        "candidates_max",
        "utc_offset_minutes",
    }
