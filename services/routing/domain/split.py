"""Deterministic traffic splitting: the same payment id always lands on the same side, on any replica.

The key is hashed with SHA-256 and the first 64 bits are read as an integer n, uniform in [0, 2^64).
Choosing among weights w_1..w_k (integers, total W) takes slot = n·W >> 64, uniform in [0, W), and
walks the cumulative weights, all in integers so no float rounding can differ between machines.
When a chosen route is unavailable (failed already, unhealthy), the same n is used over the
remaining routes, so a retry of the same payment moves to the next route deterministically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_BITS = 64


def hash64(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def unit_interval(key: str) -> float:
    """A float in [0, 1) derived from the key: for display and for ratio tests."""
    return hash64(key) / (1 << HASH_BITS)


def below_ratio(key: str, ratio: float) -> bool:
    """True for a `ratio` share of keys: used to pick half-open probe payments."""
    return hash64(key) < int(ratio * (1 << HASH_BITS))


def pick_weighted(weights: Sequence[tuple[str, int]], key: str) -> str | None:
    """The choice for `key` among (name, weight) pairs; None when no weight is positive."""
    usable = [(name, weight) for name, weight in weights if weight > 0]
    total = sum(weight for _, weight in usable)
    if total <= 0:
        return None
    slot = (hash64(key) * total) >> HASH_BITS
    cumulative = 0
    for name, weight in usable:
        cumulative += weight
        if slot < cumulative:
            return name
    return usable[-1][0]  # unreachable: slot < total


def split_key(rule_id: str, payment_id: str) -> str:
    """Per-rule key, so two independent splits are not correlated for the same payment."""
    return f"split:{rule_id}:{payment_id}"


def probe_key(route_id: str, payment_id: str) -> str:
    return f"probe:{route_id}:{payment_id}"
