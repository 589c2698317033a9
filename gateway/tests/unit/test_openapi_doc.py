"""Merging the services' OpenAPI documents: filtering, colliding schema names, gateway additions."""

from __future__ import annotations

from gateway.domain.errors import PUBLIC_ERRORS
from gateway.domain.openapi_doc import assemble


def _doc(path: str, schema_name: str, schema: dict, extra_paths: dict | None = None) -> dict:
    op = {
        "operationId": "create",
        "parameters": [{"name": "X-Juhe-Merchant-Id", "in": "header"}, {"name": "limit", "in": "query"}],
        "requestBody": {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}},
        "responses": {"201": {"description": "ok"}},
    }
    return {"paths": {path: {"post": op}, **(extra_paths or {})}, "components": {"schemas": {schema_name: schema}}}


def test_assemble_filters_renames_and_decorates() -> None:
    docs = {
        "cashier": _doc("/v1/payments", "Item", {"type": "object"}, {"/livez": {"get": {}}, "/v1/route": {"get": {}}}),
        "ledger": _doc("/v1/accounts", "Item", {"type": "string"}, {"/v1/payments/stolen": {"get": {}}}),
    }
    doc = assemble(
        docs,
        routes={"/v1/payments": "cashier", "/v1/accounts": "ledger", "/v1/route": "routing"},
        internal_prefixes=("/v1/route",),
        platform_only_prefixes=("/v1/accounts",),
        user_prefixes=(),
        errors=PUBLIC_ERRORS,
    )
    assert set(doc["paths"]) == {"/v1/payments", "/v1/accounts"}  # no health, internal or mis-routed paths
    schemas = doc["components"]["schemas"]
    assert schemas["Item"] == {"type": "object"} and schemas["ledger.Item"] == {"type": "string"}
    accounts = doc["paths"]["/v1/accounts"]["post"]
    assert (
        accounts["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ledger.Item"
    )
    assert accounts["security"] == [{"PlatformBearer": []}]
    assert accounts["operationId"] == "ledger_create"
    names = [p.get("name") or p.get("$ref") for p in accounts["parameters"]]
    assert names == ["limit", "#/components/parameters/IdempotencyKey"]
    assert {"401", "403", "409", "429", "503"} <= set(accounts["responses"])
    assert sorted(doc["x-juhe-unavailable-services"]) == []
    assert len(doc["x-error-codes"]) == len({e.code for e in PUBLIC_ERRORS})
