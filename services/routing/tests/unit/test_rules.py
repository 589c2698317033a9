from __future__ import annotations

from datetime import UTC, datetime

from services.routing.domain.model import LocalTime, Method, PayerClient, Scene, TimeWindow, parse_hhmm
from services.routing.domain.rules import (
    Action,
    ActionKind,
    Conditions,
    Rule,
    RuleScope,
    action_from_dict,
    action_to_dict,
    conditions_from_dict,
    conditions_to_dict,
    evaluate_rules,
    validate_rule,
)
from services.routing.tests.unit.builders import MERCHANT, T0, payment

LOCAL_NOON = LocalTime.of(T0)
KNOWN = {"wx_direct", "wx_allinpay", "wx_lianlian"}


def rule(rule_id: str, action: Action, conditions: Conditions | None = None, **kw: object) -> Rule:
    return Rule(
        rule_id=rule_id,
        name=rule_id,
        scope=kw.pop("scope", RuleScope.PLATFORM),  # type: ignore[arg-type]
        priority=kw.pop("priority", 10),  # type: ignore[arg-type]
        conditions=conditions or Conditions(),
        action=action,
        **kw,  # type: ignore[arg-type]
    )


def test_local_time_uses_the_platform_offset() -> None:
    local = LocalTime.of(datetime(2026, 3, 1, 17, 30, tzinfo=UTC))  # Sunday 17:30 UTC = Monday 01:30 +08
    assert (local.weekday, local.minute_of_day, local.date.isoformat()) == (1, 90, "2026-03-02")


def test_time_windows_including_overnight_and_weekdays() -> None:
    day = TimeWindow(parse_hhmm("08:00"), parse_hhmm("22:00"))
    night = TimeWindow(parse_hhmm("22:00"), parse_hhmm("06:00"), frozenset({5}))  # Friday night
    at = lambda wd, hhmm: LocalTime(T0.date(), wd, parse_hhmm(hhmm))  # noqa: E731
    assert day.contains(at(1, "08:00")) and not day.contains(at(1, "22:00"))
    assert night.contains(at(5, "23:00")) and night.contains(at(6, "05:59"))
    assert not night.contains(at(6, "23:00")) and not night.contains(at(5, "05:00"))


def test_conditions_match_every_dimension() -> None:
    c = Conditions(
        amount_min_minor=1_000,
        amount_max_minor=50_000,
        currencies=frozenset({"CNY"}),
        methods=frozenset({Method.WECHAT}),
        scenes=frozenset({Scene.JSAPI}),
        payer_clients=frozenset({PayerClient.WECHAT}),
        merchant_ids=frozenset({MERCHANT}),
        industries=frozenset({"education"}),
        time_of_day=TimeWindow(parse_hhmm("09:00"), parse_hhmm("18:00")),
    )
    ctx = payment(industry="education")
    assert c.mismatches(ctx, LOCAL_NOON) == []
    assert c.mismatches(payment(amount_minor=999, industry="education"), LOCAL_NOON) == ["amount_min_minor"]
    wrong = payment(amount_minor=60_000, method=Method.ALIPAY, payer_client=PayerClient.OTHER, industry="parking")
    assert c.mismatches(wrong, LocalTime(T0.date(), 1, parse_hhmm("20:00"))) == [
        "amount_max_minor",
        "methods",
        "payer_clients",
        "industries",
        "time_of_day",
    ]


def test_deny_and_allow_accumulate_and_the_first_preference_wins_merchant_first() -> None:
    rules = [
        rule("r_deny", Action(ActionKind.DENY, ("wx_lianlian",))),
        rule("r_allow1", Action(ActionKind.ALLOW, ("wx_direct", "wx_allinpay", "wx_lianlian"))),
        rule("r_allow2", Action(ActionKind.ALLOW, ("wx_allinpay", "wx_lianlian"))),
        rule("r_force_platform", Action(ActionKind.FORCE, ("wx_direct",)), priority=1),
        rule(
            "r_split_merchant",
            Action(ActionKind.SPLIT, weights=(("wx_allinpay", 70), ("wx_lianlian", 30))),
            scope=RuleScope.MERCHANT,
            merchant_id=MERCHANT,
            priority=50,
        ),
        rule("r_other_merchant", Action(ActionKind.DENY, ("wx_allinpay",)), scope=RuleScope.MERCHANT, merchant_id="m2"),
        rule("r_disabled", Action(ActionKind.DENY, ("wx_allinpay",)), enabled=False),
        rule("r_big_only", Action(ActionKind.DENY, ("wx_allinpay",)), Conditions(amount_min_minor=1_000_000)),
    ]
    outcome = evaluate_rules(rules, payment(), LOCAL_NOON)
    assert outcome.allowed == frozenset({"wx_allinpay", "wx_lianlian"})
    assert dict(outcome.denied_by) == {"wx_lianlian": "r_deny"}
    assert outcome.preference is not None and outcome.preference.rule_id == "r_split_merchant"
    assert outcome.matched_rule_ids == ("r_force_platform", "r_allow1", "r_allow2", "r_deny", "r_split_merchant")


def test_validation_rejects_bad_rules_with_field_paths() -> None:
    bad = Rule(
        rule_id="r",
        name="",
        scope=RuleScope.MERCHANT,
        priority=-1,
        conditions=Conditions(
            amount_min_minor=500,
            amount_max_minor=100,
            currencies=frozenset({"cny"}),
            scenes=frozenset(),
            time_of_day=TimeWindow(600, 600),
        ),
        action=Action(ActionKind.SPLIT, weights=(("wx_direct", 0), ("nope", 5))),
    )
    fields = {e.field for e in validate_rule(bad, KNOWN)}
    assert fields == {
        "name",
        "priority",
        "merchant_id",
        "conditions.amount_max_minor",
        "conditions.currencies",
        "conditions.scenes",
        "conditions.time_of_day",
        "action.weights.wx_direct",
        "action",
    }
    force_two = rule("f", Action(ActionKind.FORCE, ("wx_direct", "wx_allinpay")))
    assert [e.field for e in validate_rule(force_two, KNOWN)] == ["action.route_ids"]
    split_one = rule("s", Action(ActionKind.SPLIT, weights=(("wx_direct", 1),)))
    assert [e.field for e in validate_rule(split_one, KNOWN)] == ["action.weights"]
    exclusive_deny = rule("d", Action(ActionKind.DENY, ("wx_direct",), exclusive=True))
    assert [e.field for e in validate_rule(exclusive_deny, KNOWN)] == ["action.exclusive"]
    platform_with_merchant = rule("p", Action(ActionKind.DENY, ("wx_direct",)), merchant_id="m")
    assert [e.field for e in validate_rule(platform_with_merchant, KNOWN)] == ["merchant_id"]
    good = rule("ok", Action(ActionKind.ALLOW, ("wx_direct",)), Conditions(scenes=frozenset({Scene.APP})))
    assert validate_rule(good, KNOWN) == []


def test_conditions_and_actions_round_trip_through_plain_data() -> None:
    c = Conditions(
        amount_min_minor=1,
        methods=frozenset({Method.ALIPAY, Method.WECHAT}),
        time_of_day=TimeWindow(parse_hhmm("22:00"), parse_hhmm("06:00"), frozenset({6, 7})),
    )
    assert conditions_from_dict(conditions_to_dict(c)) == c
    a = Action(ActionKind.SPLIT, weights=(("b", 30), ("a", 70)))
    assert action_from_dict(action_to_dict(a)) == a
