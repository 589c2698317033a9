"""The request pipeline of the gateway: admit (authenticate, nonce, rate limit), then proxy with idempotency.

Order matters for safety: the signature is checked before anything is written, so a forger cannot burn
a merchant's nonces or rate budget; the nonce is claimed and the request counted in one round trip; the
idempotency key is taken before the upstream is called and released if the upstream gave no final answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, replace

import asyncpg
from fastapi import Request, Response

from gateway.clients.proxy import ForwardedIdentity, UpstreamResponse, Upstreams
from gateway.config import Settings
from gateway.domain import access, idempotency, ratelimit, suspension, versions
from gateway.domain import staff as staff_rules
from gateway.domain.access import Principal, RouteClass
from gateway.domain.credentials import bearer_matches, hash_secret
from gateway.domain.errors import IDEMPOTENCY_KEY_IN_PROGRESS, MERCHANT_SUSPENDED, NONCE_REUSED
from gateway.flows.identities import Authenticated, Identities
from gateway.store import guards
from libs.common import unstorable
from libs.common.errors import PAYLOAD_TOO_LARGE, VALIDATION_FAILED, Problem
from libs.common.internal_auth import mint_identity_token
from libs.common.logging import get_logger

log = get_logger("juhe.gateway")

IDENTITY_CACHE_ENTRIES_MAX = 10_000  # principals whose forwarded identity is kept (cleared when full)
LEASE_RENEWALS_PER_LEASE = 3  # an idempotency key's lease is renewed every third of it
RELEASE_RETRY_INTERVAL_SECONDS = 0.25  # a release that failed (guard database down) is tried again this often


def refuse_unstorable_text(request: Request, body: bytes) -> None:
    """The boundary text rule (`libs.common.unstorable`): U+0000, lone surrogates and invalid UTF-8 in the
    path, query, a header or a JSON body (keys and values, nested, raw or as `\\u` escapes) are refused.

    No Juhe API has a use for them and no store can hold them: behind the gateway they turned into 500s
    in the services (and, in the ledger's batching writer, into failures of other merchants' transfers).
    Checked after authentication, before anything is written.
    """
    scope = request.scope
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    refused = unstorable.request_head_problem(raw_path, scope.get("query_string", b""), scope.get("headers") or [])
    if refused is None and body:
        content_type = request.headers.get("content-type")
        if unstorable.is_json_media_type(content_type.encode("latin-1") if content_type else None):
            problem = unstorable.json_body_problem(body)
        else:
            problem = unstorable.NUL_DETAIL if b"\x00" in body else None
        refused = ("body", problem) if problem is not None else None
    if refused is not None:
        where, detail = refused
        raise Problem(
            VALIDATION_FAILED,
            f"{where}: {detail}",
            errors=[{"loc": [where], "msg": detail, "type": "string_unstorable_character"}],
        )


def path_and_query(request: Request) -> str:
    """Exactly what the client sent on the request line: the string its signature covers."""
    raw_path: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string", b"")
    return raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


@dataclass
class Gatekeeper:
    settings: Settings
    guard_pool: asyncpg.Pool
    identities: Identities
    upstreams: Upstreams

    def __post_init__(self) -> None:
        s = self.settings
        self.limits: dict[RouteClass, int] = {
            "read": s.rate_limit_read_max,
            "write": s.rate_limit_write_max,
            "admin": s.rate_limit_admin_max,
        }
        # Prefix lists never change after start-up: indexed once (see access.PrefixIndex).
        self.route_index = access.PrefixIndex(s.routes)
        self.internal_index = access.PrefixIndex(s.internal_prefixes)
        self.passthrough_index = access.PrefixIndex(s.passthrough_prefixes)
        self.platform_only_index = access.PrefixIndex(s.platform_only_prefixes)
        self.user_index = access.PrefixIndex(s.user_prefixes)
        self._identities: dict[Principal, tuple[float, ForwardedIdentity]] = {}
        self._releasing: set[asyncio.Task[None]] = set()
        self._web_client_hash = hash_secret(s.web_client_token.get_secret_value())

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.settings.body_size_max_bytes:
            raise Problem(PAYLOAD_TOO_LARGE, f"at most {self.settings.body_size_max_bytes} bytes")
        body = await request.body()
        if len(body) > self.settings.body_size_max_bytes:
            raise Problem(PAYLOAD_TOO_LARGE, f"at most {self.settings.body_size_max_bytes} bytes")
        return body

    async def admit(self, request: Request, body: bytes, route_class: RouteClass) -> Principal:
        """Authenticate, claim the nonce and count the request (the gateway's own platform routes)."""
        authenticated = await self.authenticate(request, body)
        refuse_unstorable_text(request, body)
        await self._guard(authenticated, route_class)
        return authenticated.principal

    async def count(self, bucket: str, limit: int) -> None:
        """Count one request in a named bucket of the shared sliding windows (every replica agrees), or 429:
        the narrower limits of sign-in links and payment PINs, on top of the identity's own."""
        window = self.settings.rate_limit_window_seconds
        admission = await guards.admit(self.guard_pool, bucket=bucket, window_seconds=window, limit=limit)
        _check_rate(admission, limit, window)

    async def authenticate(self, request: Request, body: bytes) -> Authenticated:
        return await self.identities.authenticate(
            method=request.method, path_and_query=path_and_query(request), headers=request.headers, body=body
        )

    async def _guard(
        self,
        authenticated: Authenticated,
        route_class: RouteClass,
        claim: guards.KeyClaim | None = None,
        *,
        suspendable: str | None = None,
    ) -> guards.Admission:
        """One round trip: key still active, merchant not suspended (when `suspendable` names it), nonce, rate
        window, (for writes) idempotency key; refused in that order."""
        nonce = authenticated.nonce
        principal = authenticated.principal
        window = self.settings.rate_limit_window_seconds
        limit = self.limits[route_class]
        admission = await guards.admit(
            self.guard_pool,
            bucket=ratelimit.bucket(principal.key_id, route_class),
            window_seconds=window,
            auth_key_id=None if principal.kind == "user" or principal.staff_id is not None else principal.key_id,
            nonce=guards.NonceClaim(nonce.key_id, nonce.nonce, nonce.expires_epoch) if nonce is not None else None,
            key=claim,
            limit=limit,
            suspendable_merchant_id=suspendable,
        )
        if not admission.key_usable:
            # Revoked or expired on some replica after this one cached the key: forget it and say which.
            await self.identities.refuse_stale_key(principal.key_id)
        if not admission.merchant_open:
            raise Problem(MERCHANT_SUSPENDED, f"merchant {suspendable} is suspended: reads and refunds only")
        if not admission.nonce_fresh:
            raise Problem(NONCE_REUSED, "this nonce was already used with this key; use a fresh nonce per request")
        _check_rate(admission, limit, window)
        return admission

    def identity(self, principal: Principal) -> ForwardedIdentity:
        """The signed identity forwarded for `principal`, reused while more than half its lifetime is left.

        Minting costs an HMAC, a JSON dump and two base64 encodings per request; a principal's token is
        the same for every request within a second anyway (expiry has one-second resolution), so reusing it
        for up to half the TTL changes nothing a service can check: it still expires, at most
        `internal_token_ttl_seconds` after it was minted, and carries the same claims.
        """
        now = time.time()
        cached = self._identities.get(principal)
        if cached is not None and cached[0] > now:
            return cached[1]
        ttl = self.settings.internal_token_ttl_seconds
        token = mint_identity_token(
            self.settings.internal_token_secret.get_secret_value(),
            key_id=principal.key_id,
            merchant_id=principal.merchant_id,
            platform=principal.platform_id if principal.kind in ("platform", "user") else None,
            user=principal.user_id,
            mode=principal.mode,
            ttl_seconds=ttl,
            now=now,
        )
        subject = principal.user_id if principal.kind == "user" else principal.merchant_id or principal.platform_id
        forwarded = ForwardedIdentity(token, principal.merchant_id, f"{principal.kind}:{subject}/{principal.key_id}")
        if len(self._identities) >= IDENTITY_CACHE_ENTRIES_MAX:
            self._identities.clear()
        self._identities[principal] = (now + ttl / 2, forwarded)
        return forwarded

    async def handle(self, request: Request) -> Response:
        """The public /v1 API: everything not served by the gateway itself goes through here.

        Refusal order: route → body size → authentication → authorization → unstorable text (no write yet) → API
        version (`Juhe-Version`) → one guard statement (nonce, rate limit, idempotency key) → forward; the answer
        carries the version it used. A missing or malformed Idempotency-Key is
        reported after the nonce and rate checks, as if it had been its own step.
        """
        s = self.settings
        path: str = request.scope["path"]
        service = access.resolve_service(path, s.routes, self.internal_index, self.route_index)
        body = await self.read_body(request)
        if self.passthrough_index.match(path) is not None:
            return await self._passthrough(request, service, body)
        authenticated = await self.authenticate(request, body)
        principal = authenticated.principal
        access.authorize(
            principal, path, platform_only_prefixes=self.platform_only_index, user_prefixes=self.user_index
        )
        staff_rules.authorize_staff(principal, request.method, path)
        requested_mode = request.headers.get(staff_rules.CONSOLE_MODE_HEADER)
        if principal.staff_id is not None and requested_mode is not None:
            authenticated = replace(authenticated, principal=staff_rules.with_console_mode(principal, requested_mode))
        refuse_unstorable_text(request, body)
        version = await self.api_version(request, principal)
        response = await self._admit_and_forward(request, service, authenticated, body)
        response.headers[versions.API_VERSION_HEADER] = version
        return response

    async def api_version(self, request: Request, principal: Principal) -> str:
        """The `Juhe-Version` of this request (gateway/domain/versions.py); 400 for an unknown one."""
        requested = request.headers.get(versions.API_VERSION_HEADER)
        pinned = await self.identities.pinned_version(principal.merchant_id) if principal.merchant_id else None
        return versions.resolve(requested, pinned)

    async def _admit_and_forward(
        self, request: Request, service: str, authenticated: Authenticated, body: bytes
    ) -> Response:
        s = self.settings
        principal = authenticated.principal
        path: str = request.scope["path"]
        method = request.method.upper()
        route_class = access.route_class(method, path, self.platform_only_index)
        suspendable = suspension.suspendable_merchant(principal, method, path)
        key = request.headers.get(idempotency.IDEMPOTENCY_HEADER)
        if not (method == "POST" or (key is not None and method not in access.READ_METHODS)):
            await self._guard(authenticated, route_class, suspendable=suspendable)
            return _response(await self._forward(request, service, principal, body))
        try:
            claim = guards.KeyClaim(
                scope=principal.scope,
                key=idempotency.validate_key(key),
                request_hash=idempotency.fingerprint(request.method, path_and_query(request), body),
                lock_token=secrets.token_hex(16),
                lock_seconds=s.idempotency_lock_seconds,
                ttl_seconds=s.idempotency_ttl_seconds,
            )
        except Problem:
            await self._guard(authenticated, route_class, suspendable=suspendable)
            raise
        admission = await self._guard(authenticated, route_class, claim, suspendable=suspendable)
        return await self._forward_idempotently(request, service, principal, claim, admission, body)

    async def _passthrough(self, request: Request, service: str, body: bytes) -> Response:
        window = self.settings.rate_limit_window_seconds
        limit = self.limits["write"]
        hit = await guards.admit(
            self.guard_pool,
            bucket=f"{self._passthrough_caller(request)}:passthrough",
            window_seconds=window,
            limit=limit,
        )
        _check_rate(hit, limit, window)
        return _response(await self._forward(request, service, None, body))

    def _passthrough_caller(self, request: Request) -> str:
        """Whom an unauthenticated call is counted for: its address — except Juhe's web process, which makes
        every open checkout page's calls from its own address: vouched for by its first-party token, it names
        the payer's browser (X-Forwarded-For), and each browser gets its own window."""
        peer = request.client.host if request.client else "unknown"
        browser = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if browser and bearer_matches(request.headers.get("authorization"), self._web_client_hash):
            return f"web:{browser}"
        return f"ip:{peer}"

    async def _forward(
        self, request: Request, service: str, principal: Principal | None, body: bytes
    ) -> UpstreamResponse:
        return await self.upstreams.forward(
            service,
            # HEAD is answered as the GET would be, without the body (docs_pages.HeadAsGet drops it);
            # the services' routes take GET only. The client's signature covered HEAD, as it sent it.
            method="GET" if request.method == "HEAD" else request.method,
            path_and_query=path_and_query(request),
            headers=request.headers,
            body=body,
            identity=self.identity(principal) if principal is not None else None,
            client_ip=request.client.host if request.client else None,
        )

    async def _forward_idempotently(
        self,
        request: Request,
        service: str,
        principal: Principal,
        claim: guards.KeyClaim,
        admission: guards.Admission,
        body: bytes,
    ) -> Response:
        s = self.settings
        acquired, record = admission.acquired, admission.record
        if not acquired and record is None:
            # Another replica inserted the key after our statement's snapshot, or its record expired in
            # between: look again (and take it if it expired), as the two-statement version did.
            acquired = await guards.acquire_idempotency_key(self.guard_pool, claim)
            if not acquired:
                record = await guards.load_idempotency_record(self.guard_pool, scope=claim.scope, key=claim.key)
        if not acquired:
            if record is None:
                raise Problem(IDEMPOTENCY_KEY_IN_PROGRESS, retry_after_seconds=1)
            stored = idempotency.decide(record, claim.request_hash)
            assert stored.response_status is not None
            headers = {**(stored.response_headers or {}), idempotency.REPLAYED_HEADER: "true"}
            return Response(self._opened(claim, stored), status_code=stored.response_status, headers=headers)
        renewer = asyncio.create_task(self._keep_lease(claim))
        try:
            upstream = await self._forward(request, service, principal, body)
        except BaseException:
            await _stopped(renewer)
            await self._release(claim)
            raise
        await _stopped(renewer)
        if idempotency.should_store(upstream.status) and len(upstream.body) <= s.idempotency_response_bytes_max:
            kept = {k: v for k, v in upstream.headers.items() if k.lower() in idempotency.REPLAYED_RESPONSE_HEADERS}
            try:
                sealed = self.identities.sealer.seal_bytes(
                    upstream.body, row_id=idempotency.sealed_row_id(claim.scope, claim.key)
                )
                await guards.complete_idempotency_key(
                    self.guard_pool, claim, status=upstream.status, headers=kept, body=sealed
                )
            except Exception:
                # The answer exists: give it. The key's lease runs out within idempotency_lock_seconds and a
                # retry then reaches the service again, which answers it from its own Idempotency-Key record.
                log.warning("idempotency record not completed", key=claim.key, exc_info=True)
        else:
            await self._release(claim)
        return _response(upstream)

    def _opened(self, claim: guards.KeyClaim, stored: idempotency.StoredRecord) -> bytes:
        """The stored answer's body, opened: it is sealed because it may carry a secret (a webhook endpoint's
        signing secret); a record from before sealing (gateway migration 0010) is plain until it expires."""
        body = stored.response_body or b""
        if not stored.response_sealed:
            return body
        return self.identities.sealer.open_bytes(body, row_id=idempotency.sealed_row_id(claim.scope, claim.key))

    async def _keep_lease(self, claim: guards.KeyClaim) -> None:
        """While the upstream call runs, renew the key's short lease, so only a request whose gateway died
        (no renewal) can be taken over, within `idempotency_lock_seconds`, however long a live call takes."""
        interval = claim.lock_seconds / LEASE_RENEWALS_PER_LEASE
        while True:
            await asyncio.sleep(interval)
            try:
                await guards.renew_idempotency_key(self.guard_pool, claim)
            except Exception:  # the guard database is down: the next renewal tries again
                log.warning("idempotency lease not renewed", key=claim.key, exc_info=True)

    async def _release(self, claim: guards.KeyClaim) -> None:
        """Free the key of a request that got no final answer (5xx, connection error, crash), so its retry
        runs at once. Never raises: when the guard database is down too, the release is retried in the
        background until the lease would have run out anyway."""
        if await self._try_release(claim):
            return
        task = asyncio.create_task(self._release_later(claim, time.monotonic() + claim.lock_seconds))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def close(self) -> None:
        """Stop background releases (at shutdown; their keys then lapse with their leases)."""
        for task in list(self._releasing):
            await _stopped(task)

    async def _try_release(self, claim: guards.KeyClaim) -> bool:
        try:
            await guards.release_idempotency_key(self.guard_pool, claim)
        except Exception:
            log.warning("idempotency key not released", key=claim.key, exc_info=True)
            return False
        return True

    async def _release_later(self, claim: guards.KeyClaim, deadline: float) -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(RELEASE_RETRY_INTERVAL_SECONDS)
            if await self._try_release(claim):
                return


async def _stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _check_rate(admission: guards.Admission, limit: int, window_seconds: int) -> None:
    ratelimit.check(
        admitted=admission.admitted,
        limit=limit,
        previous_hits=admission.previous_hits,
        current_hits=admission.hits,
        window_start=admission.window_start,
        window_seconds=window_seconds,
        now_epoch=admission.now_epoch,
    )


def _response(upstream: UpstreamResponse) -> Response:
    return Response(upstream.body, status_code=upstream.status, headers=upstream.headers)
