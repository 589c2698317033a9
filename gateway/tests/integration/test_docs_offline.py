"""The docs pages name no other origin and their assets load; HEAD works on GETs; every code is listed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from gateway.tests.integration.conftest import StackFactory

ASSET_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
ABSOLUTE_URL = re.compile(r"""["'(]((?:https?:)?//[^"')\s]+)""")


async def test_docs_pages_load_every_asset_from_the_gateway(make_stack: StackFactory) -> None:
    stack = await make_stack()
    async with httpx.AsyncClient(base_url=stack.url) as raw:
        for page_path in ("/docs", "/redoc"):
            page = await raw.get(page_path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            # No absolute URL at all in the page: nothing is fetched from another origin.
            assert ABSOLUTE_URL.findall(page.text) == [], page.text
            assert "/openapi.json" in page.text
            assets = set(ASSET_REFERENCE.findall(page.text))
            assert assets and all(urlsplit(a).netloc == "" and a.startswith("/docs/assets/") for a in assets)
            for asset in assets:
                loaded = await raw.get(asset)
                assert loaded.status_code == 200 and len(loaded.content) > 1000, asset
        assert (await raw.get("/docs/oauth2-redirect")).status_code == 200

        doc = (await raw.get("/openapi.json")).json()
        assert "http_400" in {e["code"] for e in doc["x-error-codes"]}

        # HEAD: the gateway's own GET routes and static assets answer like GET, without a body.
        for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
            got, head = await raw.get(path), await raw.head(path)
            assert head.status_code == 200 and head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"]
        assert (await raw.head("/v1/platform/merchants/mch_demo")).status_code == 401  # authenticated like GET
        admin_head = await raw.head(
            "/v1/platform/merchants/mch_demo", headers={"Authorization": f"Bearer {stack.keys['admin_key']}"}
        )
        assert admin_head.status_code == 200 and admin_head.content == b""

    # A signed HEAD on a proxied resource reaches the service as a GET and answers without a body.
    merchant = stack.merchant()
    listed = await merchant.request_raw("GET", "/v1/payments")
    head = await merchant.request_raw("HEAD", "/v1/payments")
    assert head.status == 200 and listed.status == 200
    assert head.headers["content-length"] == listed.headers["content-length"]
    assert stack.upstream.calls[-1]["method"] == "GET"
