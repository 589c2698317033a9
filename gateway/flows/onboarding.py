"""One-call merchant onboarding: create the merchant in the gateway, then drive the other steps to the end.

`create` does the gateway's own step in one transaction with the onboarding record (merchant, API key and
webhook secret; the merchant `disabled`, so its key is refused until the end), then drives the remaining
steps itself for up to `onboarding_inline_seconds` and answers where it got. Whatever is left — a service
that was down, a KYC check held for review, a gateway killed mid-way — the worker (`drive_due`, every
`onboarding_interval_seconds` on every worker replica) finishes: a step is a call that is safe to repeat
(idempotent PUTs, create-only contracts, the provider's one verdict per check), the steps document is saved
after each one by compare-and-set, and a lease (`onboarding_lease_seconds`) keeps two replicas from driving
the same onboarding at once while letting a dead replica's work be taken over.

Only once every step is verified is the merchant switched to `active` (one compare-and-set, in the same
transaction as the steps becoming `active`). A rejected step stops the run before anything after it is
created, and the merchant stays `disabled`: a merchant whose KYC failed has no channel, route or settlement
profile and its key is refused. `retry` reopens rejected steps (a reviewer cleared the finding at the
provider, a bank record was corrected) and drives again.

The steps' calls to other services are reused from how the seed and the migration provision merchants: the
cashier's admin PUTs (`/v1/admin/merchants/{id}`, `…/channels/{channel}`), routing's create-only contract
(`expected_version: 0`; an existing one with the same sub-merchant id is ours from a lost answer, another is a
conflict, never overwritten: `services/migration/flows/provision.py`), settlement's cycle and fee-rate PUTs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from sqlalchemy.exc import IntegrityError

from gateway.clients.identity import IdentityProvider
from gateway.clients.services import PlatformCalls, ServiceUnavailable
from gateway.config import Settings
from gateway.domain import onboarding as rules
from gateway.domain.access import Principal
from gateway.domain.credentials import new_secret
from gateway.domain.errors import MERCHANT_EXISTS, ONBOARDING_NOT_FOUND, ONBOARDING_STATE
from gateway.domain.onboarding import Outcome, Reason
from gateway.flows.identities import WEBHOOK_SECRET_PREFIX, Identities
from gateway.flows.onboarding_partner import PartnerTemplates
from gateway.store import credentials as credential_store
from gateway.store import onboarding as store
from libs.common.errors import IDEMPOTENCY_KEY_REUSED, Problem
from libs.common.ids import new_id
from libs.common.logging import get_logger

log = get_logger("juhe.gateway.onboarding")

ONBOARDING_ID_PREFIX = "onb"
TRANSIENT_STATUS = frozenset({408, 425, 429})  # a service's "not now": the step is tried again, not rejected
DISABLED = "disabled"  # a merchant whose onboarding is not complete: its keys are refused (flows/identities/)


def request_fingerprint(body: dict[str, Any]) -> bytes:
    """The same onboarding whatever the JSON spelling (key order, spaces): its canonical form's SHA-256."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()


class OnboardingFlow:
    def __init__(
        self, identities: Identities, calls: PlatformCalls, provider: IdentityProvider, settings: Settings
    ) -> None:
        self.identities = identities
        self.uow = identities.uow
        self.calls = calls
        self.provider = provider
        self.settings = settings
        self.templates = PartnerTemplates(identities)  # partner mode's platform templates

    # ---- the API -------------------------------------------------------------------------------------

    async def create(
        self, platform: Principal, idempotency_key: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """(the onboarding with the merchant's credentials, whether this call created it)."""
        fingerprint = request_fingerprint(body)
        existing = await self._replay(platform, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
        onboarding_id = new_id(ONBOARDING_ID_PREFIX)
        merchant_id = body.get("merchant_id") or new_id("mch")
        name = body.get("display_name") or body["legal_name"]
        try:
            async with self.uow.begin() as tx:
                if not await credential_store.insert_merchant(
                    tx.conn,
                    merchant_id=merchant_id,
                    platform_id=platform.platform_id,
                    name=name,
                    webhook_secret_sealed=self.identities.sealer.seal(new_webhook_secret(), row_id=merchant_id),
                ):
                    raise Problem(MERCHANT_EXISTS, f"merchant {merchant_id} already exists")
                await store.set_merchant_status(tx.conn, merchant_id, status=DISABLED, expected="active")
                key = await self.identities._insert_merchant_key(  # the one place merchant keys are made
                    tx.conn,
                    merchant_id,
                    platform.platform_id,
                    body.get("rsa_public_key_pem"),
                    body.get("key_mode", "test"),
                )
                await store.insert_onboarding(
                    tx.conn,
                    onboarding_id=onboarding_id,
                    platform_id=platform.platform_id,
                    merchant_id=merchant_id,
                    idempotency_key=idempotency_key,
                    request_hash=fingerprint,
                    request_sealed=self.identities.sealer.seal(json.dumps(body), row_id=onboarding_id),
                    key_id=key["key_id"],
                    status="processing",
                    steps=rules.initial_steps(),
                )
        except (IntegrityError, Problem) as exc:
            # A twin request (same key) committed first: answer its onboarding, or 409 if the body differs.
            twin = await self._replay(platform, idempotency_key, fingerprint)
            if twin is not None:
                return twin, False
            if isinstance(exc, Problem):
                raise
            raise Problem(MERCHANT_EXISTS, f"merchant {merchant_id} already exists") from None
        await self.drive(onboarding_id, budget_seconds=self.settings.onboarding_inline_seconds)
        return await self._view(onboarding_id, platform.platform_id, with_secrets=True), True

    async def read(self, platform: Principal, onboarding_id: str) -> dict[str, Any]:
        return await self._view(onboarding_id, platform.platform_id, with_secrets=False)

    async def list_page(
        self, platform: Principal, *, status: str | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """`limit` onboardings after `after` (their views without secrets), oldest first."""
        async with self.uow.read() as conn:
            rows = await store.list_onboardings(conn, platform.platform_id, status=status, after=after, limit=limit)
        return [_public_view(row) for row in rows]

    async def retry(self, platform: Principal, onboarding_id: str) -> dict[str, Any]:
        """Rejected steps back to pending, then driven again (inline, then by the worker)."""
        async with self.uow.begin() as tx:
            row = await store.get_onboarding(tx.conn, onboarding_id, platform_id=platform.platform_id)
            if row is None:
                raise Problem(ONBOARDING_NOT_FOUND, f"onboarding {onboarding_id} does not exist")
            if row["status"] != "rejected":
                raise Problem(ONBOARDING_STATE, f"onboarding {onboarding_id} is {row['status']}, not rejected")
            saved = await store.save_steps(
                tx.conn,
                onboarding_id,
                expected_updated_at=row["updated_at"],
                steps=rules.reopened(row["steps"]),
                status="processing",
                attempts=0,
                retry_after_seconds=0,
                release=True,
            )
            if saved is None:
                raise Problem(ONBOARDING_STATE, f"onboarding {onboarding_id} changed meanwhile: read it again")
        await self.drive(onboarding_id, budget_seconds=self.settings.onboarding_inline_seconds)
        return await self._view(onboarding_id, platform.platform_id, with_secrets=False)

    async def _replay(self, platform: Principal, idempotency_key: str, fingerprint: bytes) -> dict[str, Any] | None:
        async with self.uow.read() as conn:
            row = await store.by_idempotency_key(conn, platform.platform_id, idempotency_key)
        if row is None:
            return None
        if bytes(row["request_hash"]) != fingerprint:
            raise Problem(IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key onboarded a merchant with another request")
        return await self._view(row["onboarding_id"], platform.platform_id, with_secrets=True)

    async def _view(self, onboarding_id: str, platform_id: str, *, with_secrets: bool) -> dict[str, Any]:
        async with self.uow.read() as conn:
            row = await store.get_onboarding(conn, onboarding_id, platform_id=platform_id)
            key = await credential_store.get_api_key(conn, row["key_id"]) if row is not None and with_secrets else None
        if row is None:
            raise Problem(ONBOARDING_NOT_FOUND, f"onboarding {onboarding_id} does not exist")
        view = _public_view(row)
        if with_secrets and key is not None:
            # The same secrets on every repeat of the creating request (the platform's own key and Idempotency-Key):
            # a platform whose first answer was lost must not end up with a merchant nobody can use.
            secret = self.identities.sealer.open(key["secret_sealed"], row_id=key["key_id"])
            view["api_key"] = {"key_id": key["key_id"], "secret": secret}
            view["webhook_secret"] = await self.identities.webhook_secret(row["merchant_id"])
        return view

    # ---- driving the steps ---------------------------------------------------------------------------

    async def drive_due(self) -> int:
        """The worker's round: drive every due onboarding (bounded batch); how many were taken."""
        async with self.uow.read() as conn:
            due = await store.due_onboardings(conn, limit=self.settings.onboarding_batch_max)
        for onboarding_id in due:
            await self.drive(onboarding_id, budget_seconds=self.settings.onboarding_lease_seconds / 2)
        return len(due)

    async def drive(self, onboarding_id: str, *, budget_seconds: float) -> None:
        """Run pending steps in order under a lease until done, rejected, waiting, or out of time. A budget of 0
        leaves it all to the worker (`onboarding_inline_seconds = 0`: answer at once)."""
        if budget_seconds <= 0:
            return
        lease = self.settings.onboarding_lease_seconds
        async with self.uow.begin() as tx:
            row = await store.take_lease(tx.conn, onboarding_id, lease_seconds=lease)
        if row is None:
            return  # not processing, or another replica holds it
        deadline = time.monotonic() + min(budget_seconds, lease / 2)
        body = json.loads(self.identities.sealer.open(row["request_sealed"], row_id=onboarding_id))
        steps: dict[str, Any] = dict(row["steps"])
        attempts, updated_at = int(row["attempts"]), row["updated_at"]
        while True:
            name = rules.next_step(steps)
            if name is None:
                await self._finish(row, steps, attempts, updated_at)
                return
            try:
                outcome = await asyncio.wait_for(self._run(name, row, body, steps[name]), deadline - time.monotonic())
            except (ServiceUnavailable, TimeoutError) as exc:
                outcome = Outcome("retry", (Reason("service_unavailable", str(exc) or "timed out"),))
            steps = rules.apply_outcome(steps, name, outcome)
            waiting = outcome.result == "retry"
            attempts = attempts + 1 if waiting else 0
            async with self.uow.begin() as tx:
                saved = await store.save_steps(
                    tx.conn,
                    onboarding_id,
                    expected_updated_at=updated_at,
                    steps=steps,
                    status=rules.overall_status(steps),
                    attempts=attempts,
                    retry_after_seconds=rules.retry_delay_seconds(attempts) if waiting else None,
                    release=waiting or rules.overall_status(steps) != "processing",
                )
            if saved is None:
                log.warning("onboarding changed under its lease", onboarding_id=onboarding_id, step=name)
                return
            updated_at = saved["updated_at"]
            log.info("onboarding step", onboarding_id=onboarding_id, step=name, result=outcome.result)
            if waiting or outcome.result == "rejected":
                return
            if time.monotonic() >= deadline:
                async with self.uow.begin() as tx:  # hand it to the worker at once
                    await store.save_steps(
                        tx.conn,
                        onboarding_id,
                        expected_updated_at=updated_at,
                        steps=steps,
                        status="processing",
                        attempts=attempts,
                        retry_after_seconds=0,
                        release=True,
                    )
                return

    async def _finish(self, row: Any, steps: dict[str, Any], attempts: int, updated_at: Any) -> None:
        """Every step verified: the merchant goes live and every step becomes active, in one transaction."""
        if not rules.ready_to_activate(steps):
            return
        try:
            async with self.uow.begin() as tx:
                await store.set_merchant_status(tx.conn, row["merchant_id"], status="active", expected=DISABLED)
                saved = await store.save_steps(
                    tx.conn,
                    row["onboarding_id"],
                    expected_updated_at=updated_at,
                    steps=rules.activated(steps),
                    status="active",
                    attempts=attempts,
                    retry_after_seconds=None,
                    release=True,
                )
                if saved is None:
                    raise _ChangedMeanwhile  # rolls the activation back with it
        except _ChangedMeanwhile:
            log.warning("onboarding changed before activation", onboarding_id=row["onboarding_id"])
            return
        log.info("merchant onboarded", onboarding_id=row["onboarding_id"], merchant_id=row["merchant_id"])

    async def _run(self, name: str, row: Any, body: dict[str, Any], step: dict[str, Any]) -> Outcome:
        platform_id, merchant_id = str(row["platform_id"]), str(row["merchant_id"])
        if name == "kyc":
            return await self._kyc(row, body, step)
        if name == "ledger":
            return await self._ledger(platform_id, merchant_id, body)
        if name == "cashier":
            return await self._cashier(platform_id, merchant_id, body)
        if name == "routing":
            return await self._routing(platform_id, merchant_id, body)
        if name == "settlement":
            return await self._settlement(platform_id, merchant_id, body)
        raise ValueError(f"no step {name}")

    async def _kyc(self, row: Any, body: dict[str, Any], step: dict[str, Any]) -> Outcome:
        rep, account = body["legal_representative"], body["settlement_account"]
        own = rules.account_name_reasons(
            body["entity_type"],
            legal_name=body["legal_name"],
            representative_name=rep["name"],
            account_name=account["account_name"],
        )
        if own:
            return Outcome("rejected", own)
        check_id = f"{row['onboarding_id']}.{int(step.get('round', 0))}"
        verdict = await self.provider.check_merchant(
            {
                "check_id": check_id,
                "entity_type": body["entity_type"],
                "legal_name": body["legal_name"],
                "business_licence_number": body.get("business_licence_number"),
                "legal_representative": {"name": rep["name"], "id_number": rep["id_number"]},
                "bank_account": {"account_name": account["account_name"], "account_number": account["account_number"]},
            }
        )
        reasons = tuple(
            Reason(str(r.get("code")), str(r.get("detail") or ""), r.get("field")) for r in verdict.get("reasons") or []
        )
        if verdict["result"] == "approved":
            return Outcome("verified", detail={"check_id": check_id})
        if verdict["result"] == "rejected":
            return Outcome("rejected", reasons or (Reason("kyc_rejected", "the identity provider rejected it"),))
        return Outcome("retry", (Reason("kyc_in_review", f"check {check_id} is held for a manual review"),))

    async def _ledger(self, platform_id: str, merchant_id: str, body: dict[str, Any]) -> Outcome:
        """The merchant's holder and accounts in the ledger (a repeat of the same holder is 200)."""
        if body["entity_type"] == "individual":
            return Outcome("verified", detail={"note": "no business licence: the ledger opens accounts on first use"})
        holder = {
            "holder_id": merchant_id,
            "holder_type": "merchant",
            "name": body["legal_name"],
            "credit_code": body["business_licence_number"],
            "legal_person": body["legal_representative"]["name"],
            "settlement_account": body["settlement_account"]["account_number"],
        }
        status, answer = await self.calls.call(
            "ledger",
            "POST",
            "/v1/wallet/holders",
            platform_id=platform_id,
            body=holder,
            idempotency_key=f"onboarding-{merchant_id}",
        )
        return _answered(status, answer, "ledger")

    async def _cashier(self, platform_id: str, merchant_id: str, body: dict[str, Any]) -> Outcome:
        """Notify URL first (the cashier adopts the gateway's webhook secret on hearing of the merchant), then
        each channel's configuration in its mode (the key's unless the opening names one: a test and a live
        configuration of one channel live side by side): a live configuration must be at real channel hosts and a
        test one at sandboxes (the cashier refuses a contradiction: 422 `channel_mode_mismatch`, docs/test-mode.md)."""
        status, answer = await self.calls.call(
            "cashier",
            "PUT",
            f"/v1/admin/merchants/{merchant_id}",
            platform_id=platform_id,
            body={"notify_url": body.get("webhook_url")},
        )
        if status != 200:
            return _answered(status, answer, "cashier")
        for opening in body["channels"]:
            mode = opening.get("mode") or body.get("key_mode", "test")
            config = opening.get("config")
            if config is None:  # partner mode: the platform's template with the merchant's part over it
                config = await self.templates.config_for(platform_id, opening["channel"], mode, opening["partner"])
                if config is None:
                    return Outcome(
                        "rejected",
                        (
                            Reason(
                                "partner_template_missing",
                                f"the platform has no {mode} {opening['channel']} partner "
                                f"template: PUT /v1/platform/partner-templates/{opening['channel']}/{mode}, then retry",
                                field="channels.partner",
                            ),
                        ),
                    )
            status, answer = await self.calls.call(
                "cashier",
                "PUT",
                f"/v1/admin/merchants/{merchant_id}/channels/{opening['channel']}",
                platform_id=platform_id,
                body={"priority": opening["priority"], "enabled": True, "config": config, "mode": mode},
            )
            if status != 200:
                return _answered(status, answer, f"cashier {opening['channel']}")
        return Outcome("verified", detail={"channels": sorted({c["channel"] for c in body["channels"]})})

    async def _routing(self, platform_id: str, merchant_id: str, body: dict[str, Any]) -> Outcome:
        """The profile (special-rate eligibility) and one create-only contract per channel route."""
        profile = {"entity_type": body["entity_type"], "industry_code": body["industry_code"]}
        status, answer = await self.calls.call(
            "routing", "PUT", f"/v1/merchant-profiles/{merchant_id}", platform_id=platform_id, body=profile
        )
        if status != 200:
            return _answered(status, answer, "routing profile")
        for opening in body["channels"]:
            path = f"/v1/contracts/{merchant_id}/{opening['route_id']}"
            contract = {"sub_merchant_id": opening["sub_merchant_id"], "expected_version": 0}
            status, answer = await self.calls.call("routing", "PUT", path, platform_id=platform_id, body=contract)
            if status == 409 and answer.get("code") == "version_conflict":  # ours from a lost answer, or another's
                status, answer = await self.calls.call("routing", "GET", path, platform_id=platform_id)
                if status == 200 and answer.get("sub_merchant_id") != opening["sub_merchant_id"]:
                    reason = Reason(
                        "contract_conflict",
                        f"route {opening['route_id']} has a contract with another sub-merchant id",
                        field="channels.sub_merchant_id",
                    )
                    return Outcome("rejected", (reason,))
            if status != 200:
                return _answered(status, answer, f"routing contract {opening['route_id']}")
        return Outcome("verified", detail={"routes": sorted({c["route_id"] for c in body["channels"]})})

    async def _settlement(self, platform_id: str, merchant_id: str, body: dict[str, Any]) -> Outcome:
        defaults = body.get("settlement") or {}
        cycle = defaults.get("cycle") or {"kind": "t_plus", "days": 1}
        calls = [
            (f"/v1/settlement/merchants/{merchant_id}/cycle", cycle),
            (
                f"/v1/settlement/merchants/{merchant_id}/fee-rate",
                {"platform_fee_rate_bps": int(defaults.get("platform_fee_rate_bps") or 0)},
            ),
        ]
        if defaults.get("split_rule"):
            calls.append((f"/v1/settlement/merchants/{merchant_id}/split-rule", defaults["split_rule"]))
        for path, payload in calls:
            status, answer = await self.calls.call("settlement", "PUT", path, platform_id=platform_id, body=payload)
            if status != 200:
                return _answered(status, answer, "settlement")
        return Outcome("verified", detail={"cycle": cycle})


class _ChangedMeanwhile(Exception):
    """The onboarding's row changed under this driver's lease (compare-and-set lost)."""


def _public_view(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in ("onboarding_id", "merchant_id", "status", "steps", "created_at", "updated_at")}


def _answered(status: int, answer: dict[str, Any], where: str) -> Outcome:
    """A final answer of a service: 2xx verified; 4xx rejected with the service's own code and detail (bad data
    for that service: retrying the same data cannot help, a retry after a fix can); never called for 5xx."""
    if 200 <= status < 300:
        return Outcome("verified")
    if status in TRANSIENT_STATUS:
        return Outcome("retry", (Reason(f"http_{status}", f"{where}: try again later"),))
    code = str(answer.get("code") or f"http_{status}")
    return Outcome("rejected", (Reason(code, f"{where}: {answer.get('detail') or answer.get('title') or status}"),))


def new_webhook_secret() -> str:
    return new_secret(WEBHOOK_SECRET_PREFIX)
