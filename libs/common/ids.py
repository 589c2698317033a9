"""Prefixed, sortable identifiers: `pay_0193c1…` from a UUIDv7.

UUIDv7 starts with a millisecond timestamp, so the hex form sorts by creation time; the prefix says
what the id names (`pay_`, `att_`, `re_`, `acc_`, `tr_`, `evt_`, `cpn_`, `stl_`) so a stray id in a
log or a support ticket is never ambiguous.
"""

from __future__ import annotations

import re

import uuid_utils

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
ID_MAX_LENGTH = 41  # 8-char prefix + "_" + 32 hex


def new_id(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"bad id prefix {prefix!r}")
    return f"{prefix}_{uuid_utils.uuid7().hex}"


def has_prefix(value: str, prefix: str) -> bool:
    """True when `value` looks like an id this codebase made with `prefix`."""
    head, sep, tail = value.partition("_")
    return sep == "_" and head == prefix and len(tail) == 32 and all(c in "0123456789abcdef" for c in tail)
