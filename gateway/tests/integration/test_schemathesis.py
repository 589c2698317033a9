"""Schemathesis against the gateway's merged `/openapi.json`, with the real cashier, ledger and routing
behind it (real HTTP servers on fresh migrated databases) and real credentials: merchant calls are
HMAC-signed per request, platform-only operations carry the demo platform admin key.

Bounded: a few derandomized examples per operation (`EXAMPLES_PER_OPERATION`), generation phase only,
no example database. Asserted for every response: never a 5xx, a documented status code, a documented
content type, and a body that matches the documented schema. Failures of all operations are collected
and reported together, so one run shows everything the schema and the services disagree on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import hypothesis
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase
from juhe_sdk.signing import Signer
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.tests.integration.conftest import INTERNAL_SECRET, Stack, StackFactory
from gateway.tests.integration.servers import ThreadServer

EXAMPLES_PER_OPERATION = 10
REQUEST_TIMEOUT_SECONDS = 10.0
SERVICES_UNDER_TEST = ("cashier", "ledger", "routing")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class JuheAuth(requests.auth.AuthBase):
    """Signs the request exactly as it goes on the wire (path+query and body bytes), or sends the platform
    admin key where the operation is platform-only. Overrides whatever Authorization was generated."""

    def __init__(self, signer: Signer, admin_token: str, platform_only: bool) -> None:
        self.signer = signer
        self.admin_token = admin_token
        self.platform_only = platform_only

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.platform_only:
            request.headers["Authorization"] = f"Bearer {self.admin_token}"
            return request
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert request.method is not None
        request.headers["Authorization"] = self.signer.authorization(request.method, request.path_url, raw)
        return request


def exercise(operation: Any, session: requests.Session, auth: JuheAuth) -> int:
    """Run one operation's bounded examples; the number of calls made. Raises what schemathesis found."""
    calls = 0

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def check(case: Any) -> None:
        nonlocal calls
        calls += 1
        response = case.call(session=session, auth=auth, timeout=REQUEST_TIMEOUT_SECONDS)
        case.validate_response(response, checks=CHECKS)

    check()
    return calls


def run_schemathesis(base_url: str, keys: dict[str, Any]) -> tuple[int, list[str]]:
    """(calls made, failures) for every operation of the merged document."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    signer = Signer(keys["key_id"], keys["secret"])
    failures: list[str] = []
    calls = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # an operation the document cannot describe: the test fails on it
            operation = result.ok()
            platform_only = operation.definition.raw.get("security") == [{"PlatformBearer": []}]
            auth = JuheAuth(signer, keys["admin_key"], platform_only)
            try:
                calls += exercise(operation, session, auth)
            except (Exception, BaseExceptionGroup) as exc:  # collect: one run lists every disagreement
                failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    return calls, failures


async def test_the_public_api_conforms_to_its_openapi_document(
    make_stack: StackFactory, migrated_database: Callable[[str], Any], service_settings: Callable[..., Any]
) -> None:
    from services.cashier.app import create_app as cashier_app
    from services.ledger.app import create_app as ledger_app
    from services.routing.app import create_app as routing_app

    factories: dict[str, Callable[[Any], FastAPI]] = {
        "cashier": cashier_app,
        "ledger": ledger_app,
        "routing": routing_app,
    }
    servers: dict[str, ThreadServer] = {}
    try:
        for name in SERVICES_UNDER_TEST:
            settings = service_settings(
                name, database_url=await migrated_database(name), role="api", internal_token_secret=INTERNAL_SECRET
            )
            servers[name] = ThreadServer(factories[name](settings)).start()
        generous = 1_000_000
        stack: Stack = await make_stack(
            **{f"{name}_url": server.base_url for name, server in servers.items()},
            rate_limit_read_max=generous,
            rate_limit_write_max=generous,
            rate_limit_admin_max=generous,
        )
        calls, failures = await asyncio.to_thread(run_schemathesis, stack.url, stack.keys)
        assert not failures, f"{len(failures)} operations disagree with the schema:\n" + "\n\n".join(failures)
        # The run really exercised the three services (not only the gateway's own routes).
        assert calls >= EXAMPLES_PER_OPERATION * 10, calls
    finally:
        for server in servers.values():
            server.stop()
