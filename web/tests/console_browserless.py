"""A signed-in console user without a browser, for the consoles' permission-matrix tests (merchant and operator):
cookies kept by hand, since the console's are `Secure` and httpx (unlike Chromium) does not send those to
http://127.0.0.1."""

from __future__ import annotations

import re
from typing import Any

import httpx


class Browserless:
    def __init__(self, gw: str) -> None:
        self.http = httpx.Client(base_url=gw, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, path, headers={"Cookie": cookie} if cookie else {}, **kwargs)
        self.cookies.update(response.cookies.items())
        return response

    def close(self) -> None:
        self.http.close()


def csrf_of(html: str) -> str:
    """The CSRF token of the page's first form."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)
