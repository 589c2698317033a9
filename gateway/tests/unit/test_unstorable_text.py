"""Unstorable text (U+0000, lone surrogates, invalid UTF-8) is refused at the boundary, in any of its
spellings and wherever it is, and only there: text that merely looks like it passes."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.api.gatekeeper import refuse_unstorable_text
from libs.common.errors import Problem


def request(
    path: str = "/v1/payments", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> Request:
    scope = {"type": "http", "method": "POST", "path": path, "query_string": query, "headers": headers or []}
    return Request(scope)


@pytest.mark.parametrize(
    ("path", "query", "headers", "body"),
    [
        ("/v1/payments/pay\x00", b"", None, b""),
        ("/v1/payments", b"merchant_order_no=a%00b", None, b""),
        ("/v1/payments", b"merchant_order_no=a%ED%BF%BFb", None, b""),  # an encoded lone surrogate
        ("/v1/payments", b"merchant_order_no=%FF", None, b""),  # not UTF-8
        ("/v1/payments", b"", [(b"x-note", b"a\x00b")], b""),
        ("/v1/payments", b"", None, b'{"description": "a\\u0000b"}'),
        ("/v1/payments", b"", None, b'{"description": "a\\\\\\u0000b"}'),  # an escaped backslash, then U+0000
        ("/v1/payments", b"", None, b'{"description": "a\x00b"}'),
        ("/v1/payments", b"", None, b'{"description": "\\udfff"}'),  # a lone low surrogate
        ("/v1/payments", b"", None, b'{"description": "\\ud800x"}'),  # a high one without its pair
        ("/v1/payments", b"", None, b'{"description": "\\ud800"}'),
        ("/v1/payments", b"", None, b'{"description": "\\ud800\\u0041"}'),  # followed, but not by a low one
        ("/v1/payments", b"", None, b'{"\\udfff": 1}'),  # a key
        ("/v1/payments", b"", None, b'{"metadata": {"a": ["x", {"b": "\\uDFFF"}]}}'),  # nested, upper case
        ("/v1/payments", b"", None, '{"description": "a\udfffb"}'.encode("utf-8", "surrogatepass")),  # raw bytes
        ("/v1/payments", b"", None, b'{"description": "\xff"}'),
    ],
)
def test_unstorable_text_is_refused_as_validation_failed(
    path: str, query: bytes, headers: list[tuple[bytes, bytes]] | None, body: bytes
) -> None:
    with pytest.raises(Problem) as refused:
        refuse_unstorable_text(request(path, query, headers), body)
    assert refused.value.spec.code == "validation_failed"


@pytest.mark.parametrize(
    "body",
    [
        b'{"description": "a\\\\u0000b"}',
        b'{"description": "a\\\\udfffb"}',
        b'{"description": "u0000"}',
        b'{"description": "\\ud83d\\ude00 \\u00e9 \\n"}',  # a proper pair (an emoji), an accent, a newline
        '{"description": "支付 😀"}'.encode(),
        b'{"amount_minor": 100}',
        b"",
    ],
)
def test_text_that_only_looks_unstorable_passes(body: bytes) -> None:
    refuse_unstorable_text(request(query=b"limit=100&after=pay_00&q=%E6%94%AF"), body)
