"""Where merchant webhooks may be sent: https to public addresses only (no request forgery into our network).

A `notify_url` is data from a merchant, and the cashier's worker POSTs to it from inside the platform.
Without rules it can be aimed at internal services (`http://127.0.0.1:8002/v1/transfers`), the cloud
metadata endpoint or anything on the private network. The rules here are pure; the delivery path
(flows/webhook_targets.py) applies them to every address the host resolves to at delivery time and then
connects to the checked address itself, so a DNS answer that changes between check and connect cannot
bypass them.

Dev/test flags (settings, both off by default): `webhook_allow_http` accepts plain http; `webhook_allow_loopback`
accepts loopback targets (127.0.0.0/8, ::1, `localhost`) for a receiver on the developer's machine. Nothing
else internal is ever accepted.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints (AWS/GCP/Azure IPv4, AWS IPv6): named first so the refusal says what it is.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})

# (network, reason). Python's `is_global` alone is not enough (it calls multicast and NAT64 global).
_BLOCKED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link_local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "reserved"),
        ("2001:db8::/32", "reserved"),
        ("fc00::/7", "unique_local"),
        ("fe80::/10", "link_local"),
        ("fec0::/10", "unique_local"),  # deprecated site-local
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64), which is where it goes."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why a webhook may not be sent to this address (None: a public address, allowed)."""
    if address in METADATA_ADDRESSES:
        return "metadata"
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "link_local"
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_refusal(inner, allow_loopback=allow_loopback)
    for network, reason in _BLOCKED:
        if address.version == network.version and address in network:
            return None if reason == "loopback" and allow_loopback else reason
    if not address.is_global:
        return "reserved"
    return None


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback_name(host: str) -> bool:
    """`localhost` and `*.localhost` always mean this machine (RFC 6761), whatever DNS says."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def url_refusal(url: str, *, allow_http: bool = False, allow_loopback: bool = False) -> str | None:
    """Why this URL is not an acceptable webhook target on its face (None: acceptable so far).

    Checks scheme, credentials, and a host that is an IP literal or a loopback name. A host name's
    addresses are checked when the webhook is sent (they may change); see flows/webhook_targets.py.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        return "the scheme must be https" if not allow_http else "the scheme must be https or http"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not accepted"
    host = parts.hostname
    if not host:
        return "the URL has no host"
    if port == 0:
        return "port 0 is not a valid target"
    if is_loopback_name(host):
        return None if allow_loopback else f"{host} is loopback"
    address = _literal_address(host)
    if address is not None:
        reason = address_refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            return f"{host} is {reason}"
    return None
