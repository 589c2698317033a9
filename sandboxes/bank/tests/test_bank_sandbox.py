"""The bank sandbox over real HTTP: signatures, idempotency, async outcomes, callbacks, failure modes, statement."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from sandboxes.bank.crypto import CLIENT_HEADER, HEADER, sign, verify
from sandboxes.common.testing import CallbackReceiver, SandboxProcess

WAIT_SECONDS_MAX = 15.0


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    env = {
        "JUHE_DATA_DIR": str(tmp_path_factory.mktemp("bank")),
        "JUHE_SANDBOX_NOTIFY_SCALE": "0.001",
        "JUHE_SANDBOX_BANK_PROCESS_SECONDS": "0.2",
    }
    with SandboxProcess("sandboxes.bank", port_env="JUHE_SANDBOX_BANK_PORT", env=env) as process:
        yield process


class Client:
    def __init__(self, bank: SandboxProcess) -> None:
        self.base = bank.base_url
        creds = httpx.post(self.base + "/control/clients", json={}).json()
        self.client_id, self.secret = creds["client_id"], creds["secret"]

    def headers(self, payload: bytes, secret: str | None = None) -> dict[str, str]:
        return {
            CLIENT_HEADER: self.client_id,
            HEADER: sign(secret or self.secret, payload),
            "Content-Type": "application/json",
        }

    def pay(self, body: dict[str, Any], secret: str | None = None) -> httpx.Response:
        raw = json.dumps(body).encode()
        return httpx.post(self.base + "/v1/payouts", content=raw, headers=self.headers(raw, secret))

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, headers=self.headers(path.encode()))

    def wait_final(self, payout_no: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS_MAX
        while time.monotonic() < deadline:
            view = self.get(f"/v1/payouts/{payout_no}").json()
            if view["status"] != "PROCESSING":
                return dict(view)
            time.sleep(0.05)
        raise AssertionError(f"payout {payout_no} never finished")


def payout(no: str, account: str, name: str, amount: int = 1000, notify_url: str | None = None) -> dict[str, Any]:
    return {
        "payout_no": no,
        "amount_minor": amount,
        "currency": "CNY",
        "account_no": account,
        "account_name": name,
        "notify_url": notify_url,
    }


def test_payouts_outcomes_callbacks_and_statement(bank: SandboxProcess) -> None:
    client = Client(bank)
    callbacks = CallbackReceiver(reply_status=204)
    notify_url = callbacks.url("bank-notify")
    for account in (
        {"account_no": "6222000011112222", "account_name": "Shop One"},
        {"account_no": "6222000033334444", "account_name": "Closed Co", "status": "closed"},
        {"account_no": "6222000055556666", "account_name": "Slow Ltd", "mode": "timeout"},
    ):
        assert httpx.post(bank.base_url + "/control/accounts", json=account).status_code == 200

    ok = client.pay(payout("po1", "6222000011112222", "Shop One", 1234, notify_url))
    assert ok.status_code == 202 and ok.json()["status"] == "PROCESSING"
    assert verify(client.secret, ok.content, ok.headers[HEADER], skew_seconds_max=300)
    again = client.pay(payout("po1", "6222000011112222", "Shop One", 1234, notify_url))
    assert again.status_code == 200 and again.json()["bank_ref"] == ok.json()["bank_ref"]
    other = client.pay(payout("po1", "6222000011112222", "Shop One", 999, notify_url))
    assert other.status_code == 409 and other.json()["code"] == "PAYOUT_NO_USED"

    assert client.pay(payout("po2", "6222000011112222", "Shop 1", notify_url=notify_url)).status_code == 202
    assert client.pay(payout("po3", "6222000033334444", "Closed Co")).status_code == 202
    assert client.pay(payout("po4", "6222000077778888", "Nobody")).status_code == 202
    assert client.pay(payout("po5", "6222000055556666", "Slow Ltd")).status_code == 202

    assert client.wait_final("po1")["status"] == "SUCCEEDED"
    assert client.wait_final("po2")["failure_code"] == "ACCOUNT_NAME_MISMATCH"
    assert client.wait_final("po3")["failure_code"] == "ACCOUNT_CLOSED"
    assert client.wait_final("po4")["failure_code"] == "ACCOUNT_NOT_FOUND"
    time.sleep(0.5)
    assert client.get("/v1/payouts/po5").json()["status"] == "PROCESSING"  # timeout mode: the bank never answers
    done = httpx.post(f"{bank.base_url}/control/payouts/{client.client_id}/po5/complete", json={"status": "SUCCEEDED"})
    assert done.json()["status"] == "SUCCEEDED"
    refinish = httpx.post(
        f"{bank.base_url}/control/payouts/{client.client_id}/po5/complete",
        json={"status": "FAILED", "failure_code": "BANK_REJECTED"},
    )
    assert refinish.status_code == 409 and refinish.json()["code"] == "PAYOUT_FINAL"

    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while len(callbacks.bodies) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    received = [callbacks.received.get() for _ in range(callbacks.received.qsize())]
    bodies = {json.loads(body)["payout_no"]: (headers, body) for _, headers, body in received}
    assert set(bodies) == {"po1", "po2"}
    for headers, body in bodies.values():
        assert verify(client.secret, body, headers[HEADER], skew_seconds_max=300)
    assert json.loads(bodies["po2"][1])["failure_code"] == "ACCOUNT_NAME_MISMATCH"

    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    statement = client.get(f"/v1/statements/{today}")
    assert statement.status_code == 200 and verify(
        client.secret, statement.content, statement.headers[HEADER], skew_seconds_max=300
    )
    lines = statement.text.split("\r\n")
    assert lines[0].startswith("payout_no,bank_ref,account_no,amount_minor")
    assert sorted(line.split(",")[0] for line in lines[1:6]) == ["po1", "po2", "po3", "po4", "po5"]
    assert lines[6] == "# total=5,succeeded_minor=2234"


def test_signatures_are_strict(bank: SandboxProcess) -> None:
    client = Client(bank)
    bad = client.pay(payout("px", "6222000011112222", "Shop One"), secret="0" * 64)
    assert bad.status_code == 401 and bad.json()["code"] == "SIGN_ERROR"
    raw = json.dumps(payout("px", "6222000011112222", "Shop One")).encode()
    stale = {CLIENT_HEADER: client.client_id, HEADER: sign(client.secret, raw, timestamp=int(time.time()) - 900)}
    assert httpx.post(bank.base_url + "/v1/payouts", content=raw, headers=stale).status_code == 401
    assert httpx.get(bank.base_url + "/v1/payouts/px").status_code == 401
    extra = client.pay({**payout("py", "6222000011112222", "Shop One"), "amount_minor": 1.5})
    assert extra.status_code == 400 and extra.json()["code"] == "PARAM_ERROR"
    assert client.get("/v1/payouts/nothing").json()["code"] == "PAYOUT_NOT_FOUND"


def test_signature_known_vector() -> None:
    assert (
        sign("secret", b'{"a":1}', timestamp=1700000000)
        == "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
    )
    assert verify("secret", b"x", sign("secret", b"x", timestamp=100), skew_seconds_max=300, now=200)
    assert not verify("secret", b"x", sign("secret", b"x", timestamp=100), skew_seconds_max=300, now=500)
    assert not verify("secret", b"y", sign("secret", b"x", timestamp=100), skew_seconds_max=300, now=100)
