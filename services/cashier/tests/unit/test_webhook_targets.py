"""Webhook target rules (pure): https only, and never an internal address, literal or embedded."""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

import pytest

from libs.common.keepalive import LeanResponse
from services.cashier.domain.payments import request_fingerprint
from services.cashier.domain.webhook_targets import address_refusal, url_refusal
from services.cashier.flows import webhook_targets
from services.cashier.flows.webhook_targets import PinnedTargets


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8002/v1/transfers",
        "https://127.0.0.1/hooks",
        "https://127.9.9.9/hooks",
        "https://10.1.2.3/hooks",
        "https://172.16.0.1/hooks",
        "https://192.168.1.10/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest/meta-data/",
        "https://[::1]:8443/hooks",
        "https://[::]/hooks",
        "https://0.0.0.0/hooks",
        "https://100.64.0.1/hooks",
        "https://224.0.0.1/hooks",
        "https://[ff02::1]/hooks",
        "https://[fe80::1]/hooks",
        "https://[fc00::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://[64:ff9b::a9fe:a9fe]/hooks",  # NAT64 of 169.254.169.254
        "https://[2002:7f00:1::]/hooks",  # 6to4 of 127.0.0.1
        "https://localhost/hooks",
        "https://api.localhost/hooks",
        "https://user:secret@shop.example/hooks",
        "http://shop.example/hooks",
        "ftp://shop.example/hooks",
        "https:///hooks",
    ],
)
def test_refused_targets(url: str) -> None:
    assert url_refusal(url) is not None


@pytest.mark.parametrize(
    "url", ["https://shop.example/hooks", "https://8.8.8.8/hooks", "https://[2606:4700::1111]:8443/hooks"]
)
def test_public_https_targets_are_accepted(url: str) -> None:
    assert url_refusal(url) is None


def test_dev_flags_open_http_and_loopback_only() -> None:
    assert url_refusal("http://shop.example/hooks", allow_http=True) is None
    assert url_refusal("http://127.0.0.1:9000/hooks", allow_http=True) is not None
    assert url_refusal("http://127.0.0.1:9000/hooks", allow_http=True, allow_loopback=True) is None
    assert url_refusal("http://[::1]:9000/hooks", allow_http=True, allow_loopback=True) is None
    assert url_refusal("http://localhost:9000/hooks", allow_http=True, allow_loopback=True) is None
    for internal in ("http://10.0.0.1/", "http://192.168.0.1/", "http://169.254.169.254/", "http://[fd00::1]/"):
        assert url_refusal(internal, allow_http=True, allow_loopback=True) is not None, internal


def test_metadata_is_named() -> None:
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) == "metadata"
    assert address_refusal(ipaddress.ip_address("fd00:ec2::254")) == "metadata"
    assert address_refusal(ipaddress.ip_address("100.64.1.1")) == "cgnat"
    assert address_refusal(ipaddress.ip_address("93.184.216.34")) is None


def test_request_fingerprint_never_raises_on_a_lone_surrogate() -> None:
    lone = request_fingerprint({"description": "\udfff"})
    assert len(lone) == 64
    assert lone != request_fingerprint({"description": "\udffe"})
    # Valid text keeps the fingerprint it always had (stored request hashes stay comparable).
    import hashlib
    import json

    fields = {"description": "停车费 🚗"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request_fingerprint(fields) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # A surrogate pair written as two code points differs from the character it would combine into.
    assert request_fingerprint({"d": "\ud83d\ude97"}) != request_fingerprint({"d": "🚗"})


class RecordingTarget:
    """Stands for a target's connection pool (`KeepAliveClient`): what matters is where it was told to connect, the
    `Host` and TLS name it was given, and the requests it was handed (this machine has no public DNS)."""

    made: ClassVar[list[RecordingTarget]] = []

    def __init__(self, base_url: str, *, server_hostname: str, host_header: str, **_: Any) -> None:
        self.base_url, self.server_hostname, self.host_header = base_url, server_hostname, host_header
        self.paths: list[str] = []
        RecordingTarget.made.append(self)

    async def request(self, method: str, path: str, **_: Any) -> LeanResponse:
        self.paths.append(f"{method} {path}")
        return LeanResponse(204, [], b"")

    async def aclose(self) -> None:
        pass


def targets(monkeypatch: pytest.MonkeyPatch, dns: Any, keepalive_seconds: float = 0.0) -> PinnedTargets:
    RecordingTarget.made = []
    monkeypatch.setattr(webhook_targets, "resolve_host", dns)
    monkeypatch.setattr(webhook_targets, "KeepAliveClient", RecordingTarget)
    return PinnedTargets(allow_http=False, allow_loopback=False, timeout_seconds=5, keepalive_seconds=keepalive_seconds)


async def test_the_pinned_request_names_the_checked_address_and_keeps_host_and_sni(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """https to a name: the connection target is the address we checked; Host and TLS SNI stay the name
    (so the certificate is verified for the name)."""

    async def dns(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("2606:4700::1111")]

    pinned = targets(monkeypatch, dns)
    assert await pinned.post("https://hooks.shop.example:8443/juhe?a=1", b"{}", {}, read_bytes_max=1024) == 204
    (target,) = RecordingTarget.made
    assert target.base_url == "https://[2606:4700::1111]:8443"
    assert target.host_header == "hooks.shop.example:8443" and target.server_hostname == "hooks.shop.example"
    assert target.paths == ["POST /juhe?a=1"]


async def test_connections_are_pooled_per_name_and_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep-alive never weakens pinning: a pool serves one (scheme, name, port, checked address) only, so two names
    sharing an address never share a connection, and a name that now resolves elsewhere gets a new pool; every
    request is still resolved and checked first (a name moved to an internal address is refused)."""
    answers: dict[str, str] = {"a.shop.example": "93.184.216.34", "b.shop.example": "93.184.216.34"}

    async def dns(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(answers[host])]

    pinned = targets(monkeypatch, dns, keepalive_seconds=30)
    for host in ("a.shop.example", "a.shop.example", "b.shop.example"):
        assert await pinned.post(f"https://{host}/juhe", b"{}", {}, read_bytes_max=1024) == 204
    answers["a.shop.example"] = "93.184.216.35"
    assert await pinned.post("https://a.shop.example/juhe", b"{}", {}, read_bytes_max=1024) == 204
    answers["a.shop.example"] = "10.0.0.5"
    with pytest.raises(webhook_targets.TargetRefused):
        await pinned.post("https://a.shop.example/juhe", b"{}", {}, read_bytes_max=1024)
    await pinned.aclose()
    assert [(t.host_header, t.base_url, len(t.paths)) for t in RecordingTarget.made] == [
        ("a.shop.example", "https://93.184.216.34:443", 2),
        ("b.shop.example", "https://93.184.216.34:443", 1),
        ("a.shop.example", "https://93.184.216.35:443", 1),
    ]


async def test_a_delivery_reuses_the_connection_of_the_one_before() -> None:
    """Against a real keep-alive HTTP/1.1 server on loopback: two deliveries, one TCP connection; with
    keepalive_seconds=0 a connection each (the setting's off switch)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    peers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            peers.append(self.client_address[1])
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        for keepalive_seconds, connections in ((30.0, 1), (0.0, 2)):
            peers.clear()
            pinned = PinnedTargets(
                allow_http=True, allow_loopback=True, timeout_seconds=5, keepalive_seconds=keepalive_seconds
            )
            for _ in range(2):
                assert await pinned.post(url, b"{}", {}, read_bytes_max=1024) == 204
            await pinned.aclose()
            assert len(peers) == 2 and len(set(peers)) == connections, (keepalive_seconds, peers)
    finally:
        server.shutdown()
        server.server_close()
