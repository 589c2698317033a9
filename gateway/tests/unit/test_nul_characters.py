"""U+0000 is refused at the boundary, in any of its spellings, and only there."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.gatekeeper import refuse_nul_characters
from libs.common.errors import Problem


def request(path: str = "/v1/payments", query: bytes = b"") -> Request:
    return Request({"type": "http", "method": "POST", "path": path, "query_string": query, "headers": []})


@pytest.mark.parametrize(
    ("path", "query", "body"),
    [
        ("/v1/payments/pay\x00", b"", b""),
        ("/v1/payments", b"merchant_order_no=a%00b", b""),
        ("/v1/payments", b"", b'{"description": "a\\u0000b"}'),
        ("/v1/payments", b"", b'{"description": "a\\\\\\u0000b"}'),  # an escaped backslash, then U+0000
        ("/v1/payments", b"", b'{"description": "a\x00b"}'),
    ],
)
def test_nul_is_refused_as_validation_failed(path: str, query: bytes, body: bytes) -> None:
    with pytest.raises(Problem) as refused:
        refuse_nul_characters(request(path, query), body)
    assert refused.value.spec.code == "validation_failed"


@pytest.mark.parametrize(
    "body",
    [b'{"description": "a\\\\u0000b"}', b'{"description": "u0000"}', b'{"amount_minor": 100}', b""],
)
def test_text_that_only_looks_like_nul_passes(body: bytes) -> None:
    refuse_nul_characters(request(query=b"limit=100&after=pay_00"), body)
