"""SDK units with known vectors (openssl), and its retry/error behaviour against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from juhe_sdk import (
    Client,
    IdempotencyError,
    NotFoundError,
    RateLimitError,
    WebhookSignatureError,
    construct_event,
    sign_webhook,
    verify_signature,
)
from juhe_sdk.signing import Signer

BODY = b'{"type":"payment.succeeded"}'
# printf '1700000000.{"type":"payment.succeeded"}' | openssl dgst -sha256 -hmac whsec_test
KNOWN_V1 = "3b93588b1e6e2e788b84112e7b20acd3305e9b54c3cea5e67f46aea9a99033ce"


def test_webhook_known_vector_and_tolerance() -> None:
    header = f"t=1700000000,v1={KNOWN_V1}"
    assert sign_webhook(BODY, "whsec_test", timestamp=1700000000) == header
    assert construct_event(BODY, header, "whsec_test", now=1700000100) == {"type": "payment.succeeded"}
    verify_signature(BODY, f"t=1700000000,v1={'0' * 64},v1={KNOWN_V1}", "whsec_test", now=1700000000)  # rotation
    for bad_header, now in (
        (header, 1700000000 + 301),  # stale
        (f"t=1700000000,v1={'0' * 64}", 1700000000),  # wrong mac
        ("v1=" + KNOWN_V1, 1700000000),  # no timestamp
        ("", 1700000000),
        (None, 1700000000),
    ):
        with pytest.raises(WebhookSignatureError):
            verify_signature(BODY, bad_header, "whsec_test", now=now)
    with pytest.raises(WebhookSignatureError):
        verify_signature(BODY + b" ", header, "whsec_test", now=1700000000)


def test_signer_needs_a_secret_or_a_key() -> None:
    with pytest.raises(ValueError):
        Signer("key_x")
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:9")


class _Script:
    """Answers to give, in order; what was received."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        self.received: list[dict[str, Any]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, _Script]]:
    script = _Script([])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            script.received.append({"path": self.path, "headers": dict(self.headers)})
            status, headers, body = script.answers.pop(0)
            raw = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


def _problem(code: str, status: int, retryable: bool = False) -> dict[str, Any]:
    return {
        "type": f"https://juhe.dev/problems/{code}",
        "title": code,
        "status": status,
        "code": code,
        "retryable": retryable,
    }


def test_post_retries_keep_the_idempotency_key_and_resign(server: tuple[str, _Script]) -> None:
    url, script = server
    script.answers = [
        (503, {}, _problem("upstream_unavailable", 503, True)),
        (409, {"Retry-After": "0"}, _problem("idempotency_key_in_progress", 409, True)),
        (201, {}, {"id": "pay_1"}),
    ]
    with Client(url, key_id="key_" + "a" * 32, secret="sk_x", retry_backoff_seconds=0.001, max_retries=3) as c:
        assert c.payments.create(amount_minor=1, currency="CNY") == {"id": "pay_1"}
    keys = {r["headers"]["Idempotency-Key"] for r in script.received}
    nonces = {r["headers"]["Authorization"].split("nonce=")[1].split(",")[0] for r in script.received}
    assert len(script.received) == 3 and len(keys) == 1 and len(nonces) == 3


def test_typed_errors_and_no_retry_on_client_errors(server: tuple[str, _Script]) -> None:
    url, script = server
    script.answers = [
        (409, {}, _problem("idempotency_key_reused", 409)),
        (404, {}, _problem("payment_not_found", 404)),
        (429, {"Retry-After": "0"}, _problem("rate_limited", 429, True)),
        (429, {"Retry-After": "7"}, _problem("rate_limited", 429, True)),
    ]
    with Client(url, token="key_x.ak_y", max_retries=1, retry_backoff_seconds=0.001, retry_after_max_seconds=0) as c:
        with pytest.raises(IdempotencyError) as reused:
            c.request("POST", "/v1/payments", json={})
        assert reused.value.code == "idempotency_key_reused"
        with pytest.raises(NotFoundError):
            c.payments.retrieve("pay_x")
        with pytest.raises(RateLimitError) as limited:
            c.payments.retrieve("pay_y")
    assert limited.value.retry_after_seconds == 7
    assert len(script.received) == 4  # 409 reused and 404 once each; 429 once plus one retry
    assert script.received[1]["headers"]["Authorization"] == "Bearer key_x.ak_y"


def test_pagination_follows_next_cursor(server: tuple[str, _Script]) -> None:
    url, script = server
    script.answers = [
        (200, {}, {"data": [{"id": 1}, {"id": 2}], "next_cursor": "c2"}),
        (200, {}, {"data": [{"id": 3}], "next_cursor": None}),
    ]
    with Client(url, token="t.s") as c:
        assert [p["id"] for p in c.payments.list(page_size=2, status="succeeded")] == [1, 2, 3]
    assert script.received[0]["path"] == "/v1/payments?status=succeeded&limit=2"
    assert script.received[1]["path"] == "/v1/payments?status=succeeded&limit=2&cursor=c2"


def test_resources_build_quoted_paths_and_page_every_list_shape(server: tuple[str, _Script]) -> None:
    url, script = server
    script.answers = [
        (200, {}, {"data": [{"id": "po_1"}], "has_more": True, "next_cursor": "po_1"}),
        (200, {}, {"data": [], "has_more": False, "next_cursor": None}),
        (200, {}, {"data": [{"id": "r1"}], "has_more": True, "next_cursor": "r1"}),
        (200, {}, {"data": [{"id": "r2"}], "has_more": False, "next_cursor": None}),
        (200, {}, {"holder": {}}),
        (201, {}, {"id": "wd_1"}),
        (200, {}, {"ok": True}),
        (200, {}, {"ok": True}),
    ]
    with Client(url, token="t.s") as c:
        assert [p["id"] for p in c.payouts.list(status="pending")] == ["po_1"]
        assert [r["id"] for r in c.routing.rules.list(page_size=1)] == ["r1", "r2"]
        c.wallet.my_wallet("usr/1 2")
        c.wallet.holder("usr_1").withdraw(amount_minor=5, currency="CNY", idempotency_key="w-1")
        c.settlement.set_split_rule("mch_1", shares=[], remainder_receiver_id="rcv_1")
        c.platform.rotate_key("key_1", overlap_seconds=60)
    paths = [r["path"] for r in script.received]
    assert paths == [
        "/v1/payouts?status=pending&limit=50",
        "/v1/payouts?status=pending&limit=50&cursor=po_1",
        "/v1/rules?limit=1",
        "/v1/rules?limit=1&cursor=r1",
        "/v1/wallet/holders/usr%2F1%202/my-wallet",
        "/v1/wallet/holders/usr_1/withdrawals",
        "/v1/settlement/merchants/mch_1/split-rule",
        "/v1/platform/keys/key_1/rotate",
    ]
    assert script.received[5]["headers"]["Idempotency-Key"] == "w-1"
