"""The one list shape, checked on every list endpoint the services declare (docs/api-conventions.md).

Static: the services' apps are built but not started (no database, no broker), so this walks every GET that
pages (takes `cursor` or `limit`) in the OpenAPI documents the gateway merges into the public one, and in the
routes behind them, and in the ledger's internal lists (wallet history, accounts, statements, the entitlement
audit) that the gateway does not publish. A new list that answers another envelope, pages with `after=`, or
ignores unknown query parameters fails here, not in a merchant's integration. What the lists answer at run time
(has_more at a page's edge, a foreign cursor 422) is proven per service: services/ledger/tests/integration/
test_page_limits.py and services/marketing/tests/integration/test_list_shape.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from libs.common.paging import reject_unknown_query

SERVICES = ("cashier", "routing", "settlement", "migration", "ledger", "marketing")


def _app(service: str) -> FastAPI:
    config = importlib.import_module(f"services.{service}.config")
    app: FastAPI = importlib.import_module(f"services.{service}.app").create_app(config.Settings())
    return app


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI builds them lazily)
            yield from _api_routes(route.original_router.routes)


def _query_names_and_calls(route: APIRoute) -> tuple[set[str], set[Any]]:
    names: set[str] = set()
    calls: set[Any] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(field.alias for field in dependant.query_params)
        calls.add(dependant.call)
        pending.extend(dependant.dependencies)
    return names, calls


def _resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("service", SERVICES)
def test_every_paged_list_answers_data_has_more_next_cursor(service: str) -> None:
    doc = _app(service).openapi()
    lists = 0
    for path, operations in doc["paths"].items():
        get = operations.get("get")
        query = {p["name"] for p in (get or {}).get("parameters", []) if p["in"] == "query"}
        if not get or not query & {"cursor", "limit", "after"}:
            continue
        lists += 1
        assert "after" not in query, f"{service} {path} pages with after= (the one cursor parameter is cursor=)"
        ok = get["responses"]["200"]["content"]["application/json"]["schema"]
        properties = _resolved(doc, ok).get("properties", {})
        assert {"data", "has_more", "next_cursor"} <= set(properties), f"{service} {path}: {sorted(properties)}"
        assert properties["data"].get("type") == "array" and properties["has_more"].get("type") == "boolean"
        assert "422" in get["responses"], f"{service} {path} documents no 422 (a malformed cursor is one)"
    assert lists, f"{service} has no paged list"


@pytest.mark.parametrize("service", SERVICES)
def test_every_paged_list_refuses_unknown_query_parameters(service: str) -> None:
    for route in _api_routes(_app(service).routes):
        names, calls = _query_names_and_calls(route)
        if "GET" in (route.methods or set()) and names & {"cursor", "limit"}:
            assert reject_unknown_query in calls, f"{service} {route.path} ignores unknown query parameters"
