"""Tests of the shared sandbox toolkit: store persistence, seeded faults, notification delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.common.faults import FaultSettings
from sandboxes.common.keys import load_or_create_rsa_key
from sandboxes.common.notify import NotificationDispatcher, NotificationJob
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.store import DocumentStore
from sandboxes.common.testing import CallbackReceiver


def _receiver(statuses: list[int]) -> CallbackReceiver:
    """A real HTTP server recording POST bodies; answers from a scripted list of status codes (the last repeats)."""
    return CallbackReceiver(replies=lambda _path, n: (statuses[min(n, len(statuses) - 1)], b""))


@pytest.fixture
def receiver_factory() -> Iterator[list[CallbackReceiver]]:
    made: list[CallbackReceiver] = []
    yield made
    for receiver in made:
        receiver.close()


def _job(event_id: str, url: str) -> NotificationJob:
    return NotificationJob(event_id=event_id, url=url, build=lambda: ({}, event_id.encode()), subject=event_id)


async def _wait_for(predicate: object, limit_seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_seconds
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_store_survives_reopen(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "s.sqlite3")
    assert store.insert_if_absent("orders", "A", {"state": "NOTPAY", "amount": 1})
    assert not store.insert_if_absent("orders", "A", {"state": "X"})
    store.update("orders", "A", lambda d: {**d, "state": "SUCCESS"})
    store.close()
    reopened = DocumentStore(tmp_path / "s.sqlite3")
    assert reopened.get("orders", "A") == {"state": "SUCCESS", "amount": 1}
    assert reopened.list("orders") == [{"state": "SUCCESS", "amount": 1}]
    with pytest.raises(KeyError):
        reopened.update("orders", "missing", lambda d: d)


def test_store_transaction_rolls_back(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "s.sqlite3")
    with pytest.raises(RuntimeError), store.transaction():
        store.put("c", "k", {"v": 1})
        raise RuntimeError("boom")
    assert store.get("c", "k") is None


def test_store_once_replays_the_first_answer_and_refuses_a_changed_request(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "s.sqlite3")
    calls: list[int] = []

    def act() -> dict[str, int]:
        calls.append(1)
        store.put("things", f"t{len(calls)}", {"n": len(calls)})
        return {"n": len(calls)}

    def refused() -> Exception:
        return LookupError("request number reused")

    def failing() -> dict[str, int]:
        store.put("things", "half-done", {"n": 0})
        raise RuntimeError("refused by the rules")

    assert store.once("requests", "r1", "fp-a", act, refused) == {"n": 1}
    assert store.once("requests", "r1", "fp-a", act, refused) == {"n": 1}  # replayed, not done again
    with pytest.raises(LookupError):
        store.once("requests", "r1", "fp-b", act, refused)
    assert len(calls) == 1
    with pytest.raises(RuntimeError):
        store.once("requests", "r2", "fp-a", failing, refused)
    assert store.get("things", "half-done") is None and store.get("requests", "r2") is None  # nothing kept
    assert store.once("requests", "r2", "fp-a", act, refused) == {"n": 2}  # so a retry is a first request


def test_store_find_answers_matches_in_key_order_through_an_index_of_the_field(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "s.db")
    for key, order_no in [("k3", "A"), ("k1", "A"), ("k2", "B")]:
        store.put("trades", key, {"out_trade_no": order_no, "key": key})
    store.put("refunds", "k0", {"out_trade_no": "A", "key": "k0"})
    assert [d["key"] for d in store.find("trades", "out_trade_no", "A")] == ["k1", "k3"]
    assert store.find("trades", "out_trade_no", "C") == []
    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT key, body FROM documents"
        " WHERE collection = ? AND json_extract(body, '$.out_trade_no') = ?",
        ("trades", "A"),
    ).fetchall()
    assert "documents_by_out_trade_no" in str(plan)  # a B-tree search, not a scan of every trade
    with pytest.raises(ValueError):
        store.find("trades", "out_trade_no') OR 1=1 --", "A")
    store.close()


def test_key_is_created_once_and_reloaded(tmp_path: Path) -> None:
    directory = sandbox_data_dir("demo", tmp_path)
    first = load_or_create_rsa_key(directory, "platform")
    second = load_or_create_rsa_key(directory, "platform")
    assert first.public_pem == second.public_pem
    assert (directory / "platform.pem").stat().st_mode & 0o077 == 0


def test_faults_are_seeded_and_validated() -> None:
    a, b = FaultSettings(), FaultSettings()
    a.update({"error_rate": 0.5, "seed": 42})
    b.update({"error_rate": 0.5, "seed": 42})
    draws_a = [a.should_fail() for _ in range(50)]
    assert draws_a == [b.should_fail() for _ in range(50)]
    assert any(draws_a) and not all(draws_a)
    with pytest.raises(ValueError):
        a.update({"error_rate": 1.5})
    assert a.as_dict() == {
        "error_rate": 0.5,
        "latency_ms": 0,
        "dark": False,
        "duplicate_notifications": False,
        "out_of_order_notifications": False,
        "seed": 42,
    }
    never = FaultSettings()
    assert not any(never.should_fail() for _ in range(100))


async def test_dispatcher_retries_until_acknowledged(receiver_factory: list[CallbackReceiver]) -> None:
    receiver = _receiver([500, 503, 200])
    receiver_factory.append(receiver)
    dispatcher = NotificationDispatcher(
        schedule_seconds=[15, 15, 30],
        scale=0.001,
        faults=FaultSettings(),
        is_acknowledged=lambda r: r.status_code in (200, 204),
    )
    await dispatcher.start()
    try:
        dispatcher.submit(_job("EV-1", receiver.url("notify")))
        await _wait_for(lambda: dispatcher.pending_count == 0)
    finally:
        await dispatcher.stop()
    assert receiver.bodies == [b"EV-1"] * 3
    assert [(d.attempt, d.status_code, d.acknowledged) for d in dispatcher.deliveries] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


async def test_dispatcher_gives_up_after_schedule(receiver_factory: list[CallbackReceiver]) -> None:
    receiver = _receiver([500])
    receiver_factory.append(receiver)
    dispatcher = NotificationDispatcher(
        schedule_seconds=[1, 1], scale=0.001, faults=FaultSettings(), is_acknowledged=lambda r: r.status_code == 200
    )
    await dispatcher.start()
    try:
        dispatcher.submit(_job("EV-2", receiver.url("notify")))
        await _wait_for(lambda: dispatcher.pending_count == 0)
    finally:
        await dispatcher.stop()
    assert len(receiver.bodies) == 3


async def test_duplicate_and_out_of_order_modes(receiver_factory: list[CallbackReceiver]) -> None:
    receiver = _receiver([200])
    receiver_factory.append(receiver)
    faults = FaultSettings()
    faults.update({"duplicate_notifications": True, "out_of_order_notifications": True})
    dispatcher = NotificationDispatcher(
        schedule_seconds=[1],
        scale=0.001,
        faults=faults,
        is_acknowledged=lambda r: r.status_code == 200,
        hold_seconds=30,
    )
    await dispatcher.start()
    try:
        dispatcher.submit(_job("first", receiver.url("notify")))
        dispatcher.submit(_job("second", receiver.url("notify")))
        await _wait_for(lambda: dispatcher.pending_count == 0)
    finally:
        await dispatcher.stop()
    assert receiver.bodies[0] == b"second"
    assert sorted(receiver.bodies) == [b"first", b"first", b"second", b"second"]


async def test_dispatcher_records_connection_errors() -> None:
    dispatcher = NotificationDispatcher(
        schedule_seconds=[], scale=0.001, faults=FaultSettings(), is_acknowledged=lambda r: True
    )
    await dispatcher.start()
    try:
        dispatcher.submit(_job("EV-3", "http://127.0.0.1:9/unreachable"))
        await _wait_for(lambda: dispatcher.pending_count == 0)
    finally:
        await dispatcher.stop()
    (record,) = dispatcher.deliveries
    assert record.status_code is None and not record.acknowledged and record.error
