"""The public OpenAPI document: the services' own documents, filtered to public paths and merged.

Pure functions over dicts (no I/O): the caller fetches each service's `/openapi.json`. Each kept
operation gets the gateway's security schemes, the `Idempotency-Key` header (POST) and the problem
responses the gateway itself can answer; internal headers (`X-Juhe-*`) are removed. Schema names that
two services use for different shapes are prefixed with the service name.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.domain.access import match_prefix
from libs.common.errors import ErrorSpec

PUBLIC_PREFIX = "/v1/"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
REF_PREFIX = "#/components/schemas/"

SIGNING_DESCRIPTION = """\
Sign every merchant request:

    Authorization: {alg} key_id=<key id>,timestamp=<unix s>,nonce=<8-64 of [A-Za-z0-9_-]>,signature=<base64>

The signature covers seven lines, each ending in `\\n`: `{alg}`, the key id, the method in capitals, the path
and query exactly as sent, the timestamp, the nonce and the lowercase hex SHA-256 of the body. {how}
The timestamp must be within ±5 minutes of the server clock and a nonce is accepted once. A signature that
does not match is `401 signature_invalid` with `string_to_sign`: the string the gateway checked, to diff with
yours (it holds only what the request sent, never a secret)."""

API_DESCRIPTION = """\
One API for the whole Juhe platform. **Authentication**: merchants sign requests (HMAC-SHA256 with the key's
secret, or RSA-SHA256 with a key pair whose public half the platform uploaded); platform operators and end
users send `Authorization: Bearer <id>.<secret>`. **Idempotency**: every POST takes an `Idempotency-Key`; the same
key with the same request returns the first response again with `Idempotent-Replayed: true`; the same key with
another request is `409 idempotency_key_reused`; while the first is running, `409 idempotency_key_in_progress`.
Keys are kept 24 h. **Errors** are RFC 9457 `application/problem+json` with a stable `code` (listed below and in
`x-error-codes`). **Rate limits** are per key and route class; `429 rate_limited` carries `Retry-After`.
**Pagination** is by cursor. The official Python SDK (`juhe_sdk`) does all of this for you.

| code | status | retry helps |
|---|---|---|
"""


def _problem_schema(errors: Iterable[ErrorSpec]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "examples": sorted({e.code for e in errors})},
            "retryable": {"type": "boolean"},
        },
        "additionalProperties": True,
    }


PROBLEM_CONTENT: dict[str, Any] = {"application/problem+json": {"schema": {"$ref": REF_PREFIX + "Problem"}}}


def _is_error_status(status: str) -> bool:
    return status == "default" or status[:1] in ("4", "5")


def _problem_response(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": PROBLEM_CONTENT,
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}
        }
    return response


SERVICE_ERROR_STATUSES = ("404", "409", "422")

GATEWAY_RESPONSES: dict[str, dict[str, Any]] = {
    "Problem": _problem_response("A problem: see `code` and the error table"),
    "BadRequest": _problem_response("Malformed request (Authorization header, Idempotency-Key, JSON body)"),
    "PayloadTooLarge": _problem_response("payload_too_large: the body is over the gateway's limit"),
    "Unauthorized": _problem_response("Authentication failed (signature, timestamp, nonce, key or token)"),
    "Forbidden": _problem_response("This identity may not call this endpoint"),
    "IdempotencyConflict": _problem_response("idempotency_key_reused or idempotency_key_in_progress", retry_after=True),
    "RateLimited": _problem_response("rate_limited", retry_after=True),
    "Unavailable": _problem_response(
        "upstream_unavailable, database_unavailable or broker_unavailable (503, retryable; the last two with"
        " Retry-After) / upstream_timeout (504)",
        retry_after=False,
    ),
}


def security_schemes() -> dict[str, Any]:
    return {
        "JuheHmac": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": SIGNING_DESCRIPTION.format(alg="JUHE-HMAC-SHA256", how="HMAC-SHA256 with the key's secret."),
        },
        "JuheRsa": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": SIGNING_DESCRIPTION.format(
                alg="JUHE-RSA-SHA256", how="RSA PKCS#1 v1.5 over SHA-256 with the merchant's private key."
            ),
        },
        "PlatformBearer": {"type": "http", "scheme": "bearer", "description": "Platform operator admin key"},
        "UserBearer": {"type": "http", "scheme": "bearer", "description": "Short-lived end-user token"},
    }


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                name = value[len(REF_PREFIX) :]
                out[key] = REF_PREFIX + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def _decorate(
    operation: dict[str, Any],
    method: str,
    path: str,
    service: str,
    *,
    platform_only_prefixes: Iterable[str],
    user_prefixes: Iterable[str],
) -> dict[str, Any]:
    op = copy.deepcopy(operation)
    params = [
        p
        for p in op.get("parameters", [])
        if not (p.get("in") == "header" and str(p.get("name", "")).lower().startswith("x-juhe-"))
    ]
    if method == "post" and not any(str(p.get("name", "")).lower() == "idempotency-key" for p in params):
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    if params:
        op["parameters"] = params
    else:
        op.pop("parameters", None)
    if match_prefix(path, platform_only_prefixes) is not None:
        op["security"] = [{"PlatformBearer": []}]
    else:
        op["security"] = [{"JuheHmac": []}, {"JuheRsa": []}, {"PlatformBearer": []}]
        if match_prefix(path, user_prefixes) is not None:
            op["security"].append({"UserBearer": []})
    responses = op.setdefault("responses", {})
    for status, response in list(responses.items()):
        if _is_error_status(status) and isinstance(response, dict) and "$ref" not in response:
            # Every Juhe service answers errors through libs.common's problem handlers, whatever the
            # framework documented (FastAPI's 422 says application/json + HTTPValidationError).
            responses[status] = {**response, "content": PROBLEM_CONTENT}
    extra = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "413": "PayloadTooLarge",
        "429": "RateLimited",
        "503": "Unavailable",
        "504": "Unavailable",
    }
    if method == "post":
        extra["409"] = "IdempotencyConflict"
    for status, name in extra.items():
        responses.setdefault(status, {"$ref": f"#/components/responses/{name}"})
    # The services document their successes, not their error catalogues: any operation may answer a
    # not-found, a conflicting state or invalid fields, always as a problem (codes in x-error-codes).
    for status in SERVICE_ERROR_STATUSES:
        responses.setdefault(status, {"$ref": "#/components/responses/Problem"})
    op["x-juhe-service"] = service
    return op


def assemble(
    documents: Mapping[str, Mapping[str, Any]],
    *,
    routes: Mapping[str, str],
    internal_prefixes: Iterable[str],
    platform_only_prefixes: Iterable[str],
    user_prefixes: Iterable[str],
    errors: Iterable[ErrorSpec],
    unavailable: Iterable[str] = (),
    version: str = "1",
) -> dict[str, Any]:
    """One document from `{service: its openapi}`; `gateway` may be among them for its own routes."""
    errors = list(errors)
    internal_prefixes = tuple(internal_prefixes)
    platform_only_prefixes = tuple(platform_only_prefixes)
    user_prefixes = tuple(user_prefixes)
    schemas: dict[str, Any] = {"Problem": _problem_schema(errors)}
    paths: dict[str, Any] = {}
    operation_ids: set[str] = set()
    tags: dict[str, dict[str, Any]] = {}
    for service in sorted(documents):
        doc = documents[service]
        kept = {
            path: item
            for path, item in doc.get("paths", {}).items()
            if path.startswith(PUBLIC_PREFIX)
            and match_prefix(path, internal_prefixes) is None
            and (routes.get(match_prefix(path, routes) or "") == service or service == "gateway")
        }
        if not kept:
            continue
        theirs = doc.get("components", {}).get("schemas", {})
        renames = {
            name: f"{service}.{name}"
            for name, schema in theirs.items()
            if name in schemas and schemas[name] != _rewrite_refs(schema, {})
        }
        for name, schema in theirs.items():
            schemas[renames.get(name, name)] = _rewrite_refs(schema, renames)
        for path, item in _rewrite_refs(kept, renames).items():
            merged_item = paths.setdefault(path, {})
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    merged_item[method] = operation
                    continue
                op = _decorate(
                    operation,
                    method,
                    path,
                    service,
                    platform_only_prefixes=platform_only_prefixes,
                    user_prefixes=user_prefixes,
                )
                op_id = op.get("operationId")
                if op_id:
                    if op_id in operation_ids:
                        op["operationId"] = f"{service}_{op_id}"
                    operation_ids.add(op["operationId"])
                for tag in op.get("tags", []):
                    tags.setdefault(tag, {"name": tag, "description": f"served by {service}"})
                merged_item[method] = op
    table = "".join(f"| `{e.code}` | {e.status} | {'yes' if e.retryable else 'no'} |\n" for e in errors)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Juhe API", "version": version, "description": API_DESCRIPTION + table},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": security_schemes(),
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "description": "Unique per logical request (a UUID); kept 24 h",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "example": "0b1c9f0e-2f7a-4a4e-9a59-3f0d6f1e8c11",
                }
            },
            "responses": GATEWAY_RESPONSES,
        },
        "tags": list(tags.values()),
        "x-error-codes": [
            {"code": e.code, "status": e.status, "title": e.title, "retryable": e.retryable} for e in errors
        ],
        "x-juhe-unavailable-services": sorted(unavailable),
    }
