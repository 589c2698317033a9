"""The boundary text rule: text no Juhe store can hold is refused before a request does anything.

Unstorable text is U+0000 (PostgreSQL's text and jsonb refuse it) and any UTF-16 surrogate code point
U+D800–U+DFFF that is not part of a pair (it has no UTF-8 encoding at all: Python's `str.encode()` raises,
PostgreSQL's json parser refuses the escape). JSON lets a client spell both as escapes (`"\\u0000"`,
`"\\udfff"`), `json.loads` turns them into a `str` that then fails deep inside a service — in a hash,
an event envelope, a database write — as a 500, or, in the ledger's batching writer, for every request
of the same batch. Checked once at the edge instead: the path, the query, every header and a JSON body.

Pure functions on bytes (no framework): the services' middleware (`libs.common.web`) and the gateway's
pipeline (which checks after authentication) call the same ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

# A JSON string escape: a backslash and the character after it, or \uXXXX. Scanning left to right with
# non-overlapping matches pairs every backslash with what it escapes, so `\\u0000` (an escaped backslash,
# then the letters u0000) is not mistaken for U+0000.
_JSON_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_HIGH_SURROGATES = range(0xD800, 0xDC00)
_LOW_SURROGATES = range(0xDC00, 0xE000)
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")

NUL_DETAIL = "U+0000 (NUL) is not accepted"
ENCODING_DETAIL = "text must be valid UTF-8 (no lone surrogates)"
SURROGATE_DETAIL = "a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair) is not accepted"


def text_problem(value: str) -> str | None:
    """Why `value` (already decoded) cannot be stored, or None."""
    found = _UNSTORABLE_CHARACTERS.search(value)
    if found is None:
        return None
    return NUL_DETAIL if found.group() == "\x00" else ENCODING_DETAIL


def bytes_problem(raw: bytes) -> str | None:
    """Why raw text bytes are not storable text: a NUL byte, or not valid UTF-8 (which also refuses the
    UTF-8-like encoding of a surrogate, ED A0 80…ED BF BF, that `json.loads` would let through)."""
    if b"\x00" in raw:
        return NUL_DETAIL
    if raw.isascii():
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return ENCODING_DETAIL
    return None


def json_body_problem(body: bytes) -> str | None:
    """Why a JSON body holds unstorable text anywhere (keys, values, nested), or None; without parsing it.

    Raw bytes first (NUL, invalid UTF-8), then the `\\u` escapes: U+0000, a high surrogate not followed at
    once by a low one, a low one not preceded by a high one.
    """
    problem = bytes_problem(body)
    if problem is not None or b"\\u" not in body:
        return problem
    pending_high_end = -1  # where the escape of an unpaired high surrogate ended
    for match in _JSON_ESCAPE.finditer(body):
        if pending_high_end >= 0:
            low = match.group(1)
            if match.start() != pending_high_end or low is None or int(low, 16) not in _LOW_SURROGATES:
                return SURROGATE_DETAIL
            pending_high_end = -1
            continue
        digits = match.group(1)
        if digits is None:
            continue
        code = int(digits, 16)
        if code == 0:
            return NUL_DETAIL
        if code in _LOW_SURROGATES:
            return SURROGATE_DETAIL
        if code in _HIGH_SURROGATES:
            pending_high_end = match.end()
    return SURROGATE_DETAIL if pending_high_end >= 0 else None


def url_component_problem(raw: bytes) -> str | None:
    """A path or query as sent (percent-escapes still in): what it decodes to must be storable text."""
    if b"\x00" in raw:
        return NUL_DETAIL
    if b"%" not in raw and raw.isascii():
        return None
    return bytes_problem(unquote_to_bytes(raw))


def is_json_media_type(content_type: bytes | None) -> bool:
    """Bodies FastAPI would parse as JSON: application/json, application/*+json, or no content type."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def request_head_problem(
    raw_path: bytes, query_string: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> tuple[str, str] | None:
    """(where, why) the request line or a header carries unstorable text, or None."""
    problem = url_component_problem(raw_path)
    if problem is not None:
        return "path", problem
    if query_string:
        problem = url_component_problem(query_string)
        if problem is not None:
            return "query", problem
    for name, value in headers:
        # Only NUL: header values are latin-1 by definition (not UTF-8), every other byte decodes to text.
        if b"\x00" in value:
            return f"header {name.decode('latin-1')}", NUL_DETAIL
    return None
