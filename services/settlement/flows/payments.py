"""Settlement's record of payments and refunds, from the cashier's events (events/consumers.py adapts them), and
every effect derived from it: merchant entries, fees, splits, refunds' entries and split reversals.

Each call runs inside the inbox transaction of its event (exactly-once effect). Test and live never mix
(docs/test-mode.md): a payment or refund is recorded with the event's `livemode` (an event without it, from an
older cashier, is live), and everything derived from it (entries, splits, batches) keeps that mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from libs.common.db import Tx, UnitOfWork
from libs.common.errors import Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger
from services.settlement.domain import splits as split_math
from services.settlement.domain.cycles import DEFAULT_CYCLE, Calendar, Cycle, settle_date
from services.settlement.flows.entries import bill_day, settlement_entry, split_entries
from services.settlement.store import cycles, records
from services.settlement.store.tables import settlement_entries

log = get_logger("juhe.settlement.consumers")  # the name its log lines always had
WALLET_TOPUP = "wallet_topup"


def _explicit_split(value: Any) -> list[dict[str, Any]] | None:
    """The request's explicit split as stored; anything malformed counts as none (the rule applies)."""
    if not isinstance(value, list) or not value:
        return None
    try:
        return [{"receiver_id": str(e["receiver_id"]), "amount_minor": int(e["amount_minor"])} for e in value]
    except (KeyError, TypeError, ValueError):
        log.warning("malformed explicit split ignored", split=repr(value)[:200])
        return None


WALLET = "wallet"


def event_livemode(data: dict[str, Any]) -> bool:
    """The mode of an event: test only when it says `livemode: false` (events published before modes existed
    were live money)."""
    return data.get("livemode") is not False


def money_livemode(data: dict[str, Any]) -> bool:
    """The book a payment's or refund's money is in: the event's mode, except that a wallet payment always moved
    live money (wallets hold live money only; the cashier's wallet connector posts it in the live book, even when
    the wallet is a test channel, as on a development platform), so its settlement is live too."""
    return event_livemode(data) or data.get("channel") == WALLET or data.get("scene") == WALLET


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What recording a run of payment events reads once for all of them (docs/performance.md, fifth pass): the
    payments' locks, taken together in sorted order, and their merchants' fee rates, cycles and split rules, the
    calendar, and which of the payments have refunds waiting. Read inside the run's transaction after the locks:
    a configuration changed meanwhile applies from the next run, as it would to an event a moment later."""

    locked: frozenset[str]
    rates: dict[str, int]
    cycles: dict[str, Cycle]
    calendar: Calendar
    rules: dict[tuple[str, str], Any]
    with_refunds: frozenset[str]


async def read_run_facts(tx: Tx, datas: Sequence[dict[str, Any]]) -> RunFacts:
    """`RunFacts` of the payments of `datas` (the cashier's `payment.*` payloads): six statements for the run."""
    payment_ids = sorted({str(d["payment_id"]) for d in datas})
    merchant_ids = sorted({str(d["merchant_id"]) for d in datas})
    locked = await records.lock_payments(tx.conn, payment_ids)
    return RunFacts(
        locked=locked,
        rates=await records.platform_rates_bps(tx.conn, merchant_ids),
        cycles=await cycles.cycles_of(tx.conn, merchant_ids),
        calendar=await cycles.calendar(tx.conn),
        rules=await records.split_rules_of(tx.conn, merchant_ids),
        with_refunds=await records.payments_with_unapplied_refunds(tx.conn, payment_ids),
    )


async def record_payments(tx: Tx, events: Sequence[tuple[str, dict[str, Any], datetime]]) -> None:
    """`record_payment` of each (status, data, occurred) in order, with the facts they need read once, and the
    run's new records and their entries each written in one statement (docs/performance.md, "Seventh pass").

    Effects are those of the events one after the other: each payment's events keep their order, and two payments'
    effects touch no common row (their records, entries, splits and refunds are keyed by payment), so the first
    event of every payment that has no record yet is inserted with the others, their first successes' entries then
    go in one statement, then each one's split and refunds; every other event (a payment recorded before this run,
    a payment's second event in the run) follows in order, one at a time as before."""
    facts = await read_run_facts(tx, [data for _, data, _ in events])
    drafts = [(status, data, _record_values(status, data, occurred, facts)) for status, data, occurred in events]
    firsts = {values["payment_id"]: values for _, _, values in reversed(drafts)}  # each payment's first event
    inserted = await records.insert_payments(tx.conn, list(firsts.values()))
    new = [(data, inserted[values["payment_id"]]) for _, data, values in drafts if _inserted(values, firsts, inserted)]
    settled = [(data, row) for data, row in new if row["purpose"] != WALLET_TOPUP and row["status"] == "succeeded"]
    await cycles.add_entries(tx.conn, [entry for data, row in settled for entry in _payment_entries(data, row)])
    for _, row in settled:
        await _create_split(tx, row, _split_base(row), row["settle_date"], rule=_rule_of(row, facts))
    for _, row in new:
        if row["purpose"] != WALLET_TOPUP and row["payment_id"] in facts.with_refunds:
            await apply_refunds(tx, row["payment_id"])
    for status, data, values in drafts:
        if not _inserted(values, firsts, inserted):
            await _record(tx, status, data, values, facts)


def _inserted(values: dict[str, Any], firsts: dict[str, dict[str, Any]], inserted: dict[str, Any]) -> bool:
    """Whether `values` is the record `insert_payments` wrote: its payment's first event in the run, and new."""
    return firsts[values["payment_id"]] is values and values["payment_id"] in inserted


def _rule_of(row: Any, facts: RunFacts) -> Any:
    """The split rule of the payment's merchant and business line (None: none)."""
    return facts.rules.get((row["merchant_id"], row["business_line"]))


def _record_values(status: str, data: dict[str, Any], occurred: datetime, facts: RunFacts) -> dict[str, Any]:
    """The record of the payment after the event (`status`: succeeded, failed or closed; `data`: the cashier's
    `payment.*` payload, docs/events.md; `occurred`: its success time, else the event's), its fees and settle date
    on a success. `facts` (`read_run_facts`) holds the payment's lock and what it reads."""
    if data["payment_id"] not in facts.locked:
        raise RuntimeError(f"payment {data['payment_id']} recorded without its lock")
    attempt: dict[str, Any] = data.get("attempt") or {}
    amount_minor = int(data["amount_minor"])
    values: dict[str, Any] = {
        "payment_id": data["payment_id"],
        "merchant_id": data["merchant_id"],
        "merchant_order_no": data.get("merchant_order_no"),
        "business_line": str((data.get("metadata") or {}).get("business_line", "")),
        "channel": data.get("channel") or attempt.get("channel"),
        "out_trade_no": attempt.get("out_trade_no"),
        "channel_trade_no": data.get("channel_trade_no") or attempt.get("channel_trade_no"),
        "status": status,
        "amount_minor": amount_minor,
        "currency": data["currency"],
        "bill_date": bill_day(occurred),
        "succeeded_at": occurred if status == "succeeded" else None,
        # the split check's fields (docs/contracts.md §1): carried in every payment.* event (absent from events
        # of older cashiers)
        "purpose": str(data.get("purpose") or "payment"),
        "explicit_split": _explicit_split(data.get("split")),
        "profit_sharing": bool(data.get("profit_sharing")),
        "livemode": money_livemode(data),
    }
    if status == "succeeded":
        channel_fee = data.get("fee_minor")
        rate = facts.rates.get(data["merchant_id"])
        platform_fee = _platform_fee(data, amount_minor, rate)
        values.update(
            channel_fee_minor=channel_fee,
            channel_fee_rate_bps=data.get("fee_rate_bps"),
            platform_fee_rate_bps=rate,
            platform_fee_minor=platform_fee,
            margin_minor=(platform_fee - channel_fee) if platform_fee is not None and channel_fee is not None else None,
        )
        if values["purpose"] != WALLET_TOPUP:  # its settle date, written with the record (used on a first success)
            cycle = facts.cycles.get(data["merchant_id"], DEFAULT_CYCLE)
            values["settle_date"] = settle_date(occurred, cycle, facts.calendar)
    return values


async def record_payment(tx: Tx, status: str, data: dict[str, Any], occurred: datetime, facts: RunFacts) -> None:
    """Keep settlement's record of the payment (`_record_values`); on its first success, record fees and create its
    split; then derive the effect of every refund of it that arrived first (docs/consistency.md)."""
    await _record(tx, status, data, _record_values(status, data, occurred, facts), facts)


async def _record(tx: Tx, status: str, data: dict[str, Any], values: dict[str, Any], facts: RunFacts) -> None:
    previous, row = await records.upsert_payment(tx.conn, values)
    if row["purpose"] == WALLET_TOPUP:
        return  # the ledger runs §3.7 for it instead of §3.1: no merchant credit to settle or split
    if status == "succeeded" and previous != "succeeded":
        await cycles.add_entries(tx.conn, _payment_entries(data, row))
        await _create_split(tx, row, _split_base(row), row["settle_date"], rule=_rule_of(row, facts))
    if row["payment_id"] in facts.with_refunds:  # else none to apply: nothing to read
        await apply_refunds(tx, row["payment_id"])


def _subsidy_minor(discount: Any) -> int:
    """What a coupon's funders other than the merchant add to its 2201 (the ledger's §3.13): the platform's
    subsidy and a channel's contribution. The merchant-funded part moves no money (it collects less)."""
    if not isinstance(discount, dict):
        return 0
    parts = (discount.get("platform_minor"), discount.get("channel_minor"))
    return sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p > 0)


def _unsettled_minor(channel_discount: Any, row: Any) -> int:
    """The channel's own coupons funded by the merchant, which the channel does not settle (`unsettled_minor` of
    `channel_discount`): the merchant collects that much less — the ledger's §3.15, with its cap (no line of the
    ledger's transfer goes negative), so both sides agree."""
    if not isinstance(channel_discount, dict):
        return 0
    value = channel_discount.get("unsettled_minor")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    fees = max(int(row["channel_fee_minor"] or 0), int(row["platform_fee_minor"] or 0))
    return min(value, max(int(row["amount_minor"]) - fees, 0))


async def _subsidy_of(tx: Tx, payment_id: str, part: str = "subsidy") -> int:
    """The subsidy entry of a payment (`<payment>:subsidy`), 0 without one: what its refunds give back from;
    `part="unsettled"`: what its channel coupons left unsettled (`<payment>:unsettled`, stored negative)."""
    amount = (
        await tx.conn.execute(
            select(settlement_entries.c.amount_minor).where(settlement_entries.c.source_key == f"{payment_id}:{part}")
        )
    ).scalar()
    return abs(int(amount or 0))


def subsidy_reversed(
    subsidy_minor: int, payable_minor: int, refunded_before_minor: int, refunded_after_minor: int
) -> int:
    """The part of the subsidy a refund gives back, by cumulative floors (the ledger's §3.13 and marketing's own
    rule): refunds in any order give back exactly `floor(S × total refunded / gross)` in sum."""
    if payable_minor <= 0 or subsidy_minor <= 0:
        return 0
    return (
        subsidy_minor * refunded_after_minor // payable_minor - subsidy_minor * refunded_before_minor // payable_minor
    )


def _platform_fee(data: dict[str, Any], amount_minor: int, rate_bps: int | None) -> int | None:
    """The platform fee the event carries (the one the ledger's §3.1 takes off the merchant's 2201, so both
    sides agree by construction), capped at the gross as the ledger caps it; else the merchant's rate here."""
    carried = data.get("platform_fee_minor")
    if carried is not None:
        return min(max(int(carried), 0), amount_minor)
    return split_math.platform_fee_minor(amount_minor, rate_bps) if rate_bps is not None else None


def _split_base(row: Any) -> int:
    """What the merchant keeps of a payment (gross − platform fee, the 2201 credit of §3.1): what its split divides."""
    return int(row["amount_minor"]) - int(row["platform_fee_minor"] or 0)


def _payment_entries(data: dict[str, Any], row: Any) -> list[dict[str, Any]]:
    """The entries of a payment's first success, due on its settle date (written with its record): the merchant's net,
    a coupon's subsidy (`<payment>:subsidy`, kept by the payee: the split divides what the channel collected), and
    what the channel did not settle of its merchant-funded coupons (`<payment>:unsettled`, negative, borne by the
    payee). Its split follows them (`_create_split` of `_split_base`)."""
    subsidy_minor = _subsidy_minor(data.get("discount"))
    unsettled_minor = _unsettled_minor(data.get("channel_discount"), row)
    pid, merchant_id, due = row["payment_id"], row["merchant_id"], row["settle_date"]
    return [
        settlement_entry(f"{pid}:net", merchant_id, row, _split_base(row), due, "payment"),
        settlement_entry(f"{pid}:subsidy", merchant_id, row, subsidy_minor, due, "payment"),
        settlement_entry(f"{pid}:unsettled", merchant_id, row, -unsettled_minor, due, "payment"),
    ]


async def _create_split(
    tx: Tx,
    payment: Any,
    base: int,
    due: date,
    *,
    rule: Any,
    offset_minor: int = 0,
    source_key: str | None = None,
    deadline: datetime | None = None,
) -> None:
    """Split what the merchant keeps (gross − platform fee, the 2201 credit of §3.1), by the merchant's `rule`
    (None: none): at once (realtime), or as a ledger hold confirmed later (escrow: entries made at confirmation)."""
    if rule is None or base <= 0:
        return
    math_rule = records.math_rule(rule)
    escrow = rule["mode"] == "escrow"
    if escrow and deadline is None and rule["auto_confirm_seconds"] is not None:
        deadline = payment["succeeded_at"] + timedelta(seconds=int(rule["auto_confirm_seconds"]))
    split_id = new_id("spl")
    allocations, remainder_receiver_id = _allocations(payment, math_rule, base, offset_minor)
    await records.insert_split(
        tx.conn,
        {
            "split_id": split_id,
            "source_key": source_key or payment["payment_id"],
            "kind": "split",
            "payment_id": payment["payment_id"],
            "merchant_id": payment["merchant_id"],
            "currency": payment["currency"],
            "base_minor": base,
            "allocations": allocations,
            "remainder_receiver_id": remainder_receiver_id,
            "status": "pending",
            "mode": rule["mode"],
            "confirm_deadline": deadline if escrow else None,
            "base_offset_minor": offset_minor,
            "livemode": payment["livemode"],
        },
    )
    if not escrow:
        await split_entries(tx, split_id, payment, allocations, 1, due, "split")


def _allocations(payment: Any, rule: split_math.SplitRule, base: int, offset_minor: int) -> tuple[dict[str, int], str]:
    """(allocations, remainder receiver) of a split base: the payment's explicit split (docs/contracts.md §1) when it
    carries one that still fits the rule, what it leaves going to the payee (`PAYEE`); else the rule.
    A split re-held after a refund (`offset_minor` > 0) scales the explicit amounts down proportionally.
    Why re-validate: the rule may have changed since the cashier's check; an explicit split that no longer
    fits falls back to the rule (the platform's word) rather than leaving the payment unsplit."""
    explicit = payment["explicit_split"]
    if explicit:
        entries = [(e["receiver_id"], int(e["amount_minor"])) for e in explicit]
        keep = base + offset_minor  # what the merchant kept of the whole payment after the platform fee
        try:
            split_math.validate_explicit(entries, rule, keep)
        except Problem as exc:
            log.warning(
                "explicit split no longer fits the rule; the rule applies",
                payment_id=payment["payment_id"],
                code=exc.spec.code,
            )
        else:
            full = split_math.allocate_explicit(keep, entries)
            if offset_minor:
                return split_math.proportional(full, split_math.PAYEE, base), split_math.PAYEE
            return full, split_math.PAYEE
    return split_math.allocate(base, rule), rule.remainder_receiver_id


def split_base_refunded(payment: Any, refunded_minor: int) -> int:
    """The part of the merchant's 2201 credit a cumulative refund takes back (§3.3: fee lines rounded
    down, remainder on the merchant line)."""
    fee = int(payment["platform_fee_minor"] or 0)
    return refunded_minor - split_math.refunded_fee_minor(fee, int(payment["amount_minor"]), refunded_minor)


async def record_refund(tx: Tx, succeeded: bool, data: dict[str, Any], occurred: datetime) -> None:
    """Store the refund fact (`data`: the cashier's `refund.*` payload), then derive the effect of every refund
    of its payment not applied yet.

    Order-independent (docs/consistency.md): a refund that arrives before its payment (another topic) is
    only stored; the payment's own event applies it later, under the same per-payment lock."""
    await records.lock_payment(tx.conn, data["payment_id"])
    await records.upsert_refund(
        tx.conn,
        {
            "refund_id": data["refund_id"],
            "payment_id": data["payment_id"],
            "merchant_id": data["merchant_id"],
            "channel": data.get("channel"),
            "channel_refund_no": data.get("channel_refund_no"),
            "status": "succeeded" if succeeded else "failed",
            "amount_minor": int(data["amount_minor"]),
            "currency": data["currency"],
            "bill_date": bill_day(occurred),
            "succeeded_at": occurred if succeeded else None,
            "livemode": money_livemode(data),
        },
    )
    await apply_refunds(tx, data["payment_id"])


async def apply_refunds(tx: Tx, payment_id: str) -> int:
    """Derive, once each, the effect of the payment's stored succeeded refunds not applied yet — only once
    the payment is known as succeeded (a refund of an unknown, failed or top-up payment stays stored, and
    reconciliation lists it). The caller holds the payment's lock; returns how many were applied."""
    payment = await records.payment_for_update(tx.conn, payment_id)
    if payment is None or payment["status"] != "succeeded" or payment["purpose"] == WALLET_TOPUP:
        return 0
    pending = await records.unapplied_refunds(tx.conn, payment_id)
    for refund in pending:
        payment = await _apply_refund(tx, payment, refund)
        await records.mark_refund_applied(tx.conn, refund["refund_id"])
    return len(pending)


async def apply_parked_refunds(uow: UnitOfWork, limit: int) -> int:
    """Safety net for refunds left stored but unapplied while their payment is succeeded — in normal operation
    there are none (the payment's event applies them); after migration 0008 these are the refunds the old
    consumer dropped because they overtook their payment. Each payment under its lock, as a consumer would.
    Returns how many refunds were applied."""
    async with uow.read() as conn:
        payment_ids = await records.payments_with_parked_refunds(conn, limit)
    applied = 0
    for payment_id in payment_ids:
        async with uow.begin() as tx:
            await records.lock_payment(tx.conn, payment_id)
            applied += await apply_refunds(tx, payment_id)
    if applied:
        log.warning("parked refunds applied after their payment", refunds=applied, payments=len(payment_ids))
    return applied


def refund_net_minor(payment: Any, refund_minor: int) -> int:
    """What one refund takes off the merchant's 2201 — exactly the ledger's §3.3 merchant line: the refund
    less its share of the platform fee, that share rounded down per refund. Per refund, not cumulative, so
    the sum does not depend on the order refunds are applied in."""
    fee, gross = int(payment["platform_fee_minor"] or 0), int(payment["amount_minor"])
    return refund_minor - min(fee, split_math.refunded_fee_minor(fee, gross, refund_minor))


async def _apply_refund(tx: Tx, payment: Any, refund: Any) -> Any:
    """One refund's effect: its merchant entry and the split reversed proportionally (an escrow split not
    confirmed yet is voided and held again on what is left). Returns the payment row after it."""
    refund_id, amount = str(refund["refund_id"]), int(refund["amount_minor"])
    before_minor, payment = await records.add_refunded(tx.conn, payment["payment_id"], amount)
    refunded_after = min(int(payment["refunded_minor"]), int(payment["amount_minor"]))
    refunded_before = min(before_minor, int(payment["amount_minor"]))
    base_before = split_base_refunded(payment, refunded_before)
    base_after = split_base_refunded(payment, refunded_after)
    # The refund's merchant line (§3.3) leaves the payee's pending funds: due with the payment if that is
    # not settled yet, else at once (netted against the next batch).
    occurred = refund["succeeded_at"]
    due = max(payment["settle_date"] or bill_day(occurred), bill_day(occurred))
    refund_entry = settlement_entry(
        f"{refund_id}:net",
        payment["merchant_id"],
        payment,
        -refund_net_minor(payment, amount),
        due,
        "refund",
        refund_id,
    )
    subsidy_back = subsidy_reversed(
        await _subsidy_of(tx, payment["payment_id"]), int(payment["amount_minor"]), refunded_before, refunded_after
    )
    subsidy_entry = settlement_entry(
        f"{refund_id}:subsidy", payment["merchant_id"], payment, -subsidy_back, due, "refund", refund_id
    )
    # The channel gives back its merchant-funded coupon's share of the refund as the coupon, not as cash (§3.15).
    unsettled_back = min(
        subsidy_reversed(
            await _subsidy_of(tx, payment["payment_id"], "unsettled"),
            int(payment["amount_minor"]),
            refunded_before,
            refunded_after,
        ),
        amount
        - max(
            int(payment["channel_fee_minor"] or 0) * amount // max(int(payment["amount_minor"]), 1),
            int(payment["platform_fee_minor"] or 0) * amount // max(int(payment["amount_minor"]), 1),
        ),
    )
    unsettled_entry = settlement_entry(
        f"{refund_id}:unsettled", payment["merchant_id"], payment, unsettled_back, due, "refund", refund_id
    )
    await cycles.add_entries(tx.conn, [refund_entry, subsidy_entry, unsettled_entry])
    split = await records.split_of_payment(tx.conn, payment["payment_id"], for_update=True)
    if split is None:
        return payment
    if split["mode"] == "escrow" and split["status"] in ("pending", "held"):
        # not confirmed yet: void the hold (§3.4) and hold again what is left of the split base
        await records.move_split(tx.conn, split["split_id"], ("pending", "held"), "voiding")
        remaining = int(payment["amount_minor"]) - int(payment["platform_fee_minor"] or 0) - base_after
        await _create_split(
            tx,
            payment,
            remaining,
            due,
            rule=await records.split_rule(tx.conn, payment["merchant_id"], payment["business_line"]),
            offset_minor=base_after,
            source_key=f"{payment['payment_id']}:{refund_id}",
            deadline=split["confirm_deadline"],
        )
        return payment
    offset = int(split["base_offset_minor"])
    back = split_math.reversal(
        split["allocations"], split["remainder_receiver_id"], base_before - offset, base_after - offset
    )
    split_id = new_id("spl")
    await records.insert_split(
        tx.conn,
        {
            "split_id": split_id,
            "source_key": refund_id,
            "kind": "reversal",
            "payment_id": payment["payment_id"],
            "refund_id": refund_id,
            "merchant_id": split["merchant_id"],
            "currency": split["currency"],
            "base_minor": base_after - base_before,
            "allocations": back,
            "remainder_receiver_id": split["remainder_receiver_id"],
            "status": "pending",
            "livemode": split["livemode"],
        },
    )
    await split_entries(tx, split_id, payment, back, -1, due, "reversal", refund_id)
    return payment
