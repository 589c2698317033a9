"""Which channel configurations a test or a live payment may use (docs/test-mode.md, docs/architecture.md §4).

A configuration is `test` or `live`. A test configuration may point only at sandboxes, a live one only at real
channel hosts: the cashier tells them apart by the hosts of the configuration's endpoints (`base_url`,
`gateway_url`, … with the connector's production default when the field is left out), compared with the
sandbox hosts it knows (`Settings.sandbox_hosts`; by default the channels' public sandboxes and, in dev/test
only, loopback, where the local sandboxes run). A configuration whose endpoints are all sandboxes defaults to
`test`, one with none to `live`; a mix, or a stated mode its endpoints contradict, is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from libs.common.errors import Problem
from libs.common.modes import Mode
from services.cashier.domain.errors import CHANNEL_MODE_MISMATCH

# The channels' own public sandboxes (Alipay's 沙箱 gateway, UnionPay's test environment): sandboxes everywhere.
PUBLIC_SANDBOX_HOSTS = frozenset(
    {
        "openapi-sandbox.dl.alipaydev.com",
        "openapi.alipaydev.com",
        "gateway.test.95516.com",
        "filedownload.test.95516.com",
    }
)
# Where the local sandboxes listen (`make run`, the tests): sandboxes only when the cashier runs in dev or test.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def default_sandbox_hosts(env: str) -> frozenset[str]:
    return PUBLIC_SANDBOX_HOSTS | (LOOPBACK_HOSTS if env in ("dev", "test") else frozenset())


def is_sandbox(url: str, sandbox_hosts: Iterable[str]) -> bool:
    """`url`'s host (any port) or host:port is one of `sandbox_hosts` (lower case)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    with_port = f"{host}:{parts.port}" if parts.port is not None else host
    known = {h.lower().strip("[]") for h in sandbox_hosts}
    return bool(host) and (host in known or with_port in known)


def config_mode(channel: str, endpoints: Iterable[str], requested: Mode | None, sandbox_hosts: Iterable[str]) -> Mode:
    """The mode a configuration is stored with; 422 `channel_mode_mismatch` when its endpoints contradict it.

    A configuration without any endpoint URL (a channel the platform itself runs, configured elsewhere) takes
    the requested mode, `test` by default."""
    hosts = frozenset(sandbox_hosts)
    urls = [u for u in endpoints if u]
    sandboxes = [u for u in urls if is_sandbox(u, hosts)]
    if not urls:
        return requested or "test"
    if sandboxes and len(sandboxes) != len(urls):
        raise Problem(
            CHANNEL_MODE_MISMATCH, f"{channel}: some endpoints are sandboxes and some are not", field="config"
        )
    found: Mode = "test" if sandboxes else "live"
    if requested is not None and requested != found:
        where = "a sandbox" if found == "test" else "a real channel host, not a sandbox"
        raise Problem(
            CHANNEL_MODE_MISMATCH,
            f"a {requested} {channel} configuration cannot point at {where} ({urls[0]})",
            field="mode",
        )
    return found
