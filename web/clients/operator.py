"""What the operator console asks the platform, always through the gateway's public API as the signed-in operator.

The operator's console session is the only credential used (`ConsoleApi`): the gateway checks the operator's role
on every call (`gateway/domain/staff.py: api_permission`), on top of the page's own check, so a page cannot do more
than its viewer may. Writes carry an `Idempotency-Key` derived from the rendered form's one-time request id (a double
submit does the thing once). Lists are read one page at a time (`limit`, `cursor`); no call counts rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from web.clients.console import ConsoleApi
from web.clients.gateway import GatewayProblem

EXCEPTIONS = "/v1/settlement/reconciliation-exceptions"
PAGE_LIMIT = 50
ROUTES_READ_MAX = 100


def _seg(value: str) -> str:
    """One path segment from operator input: percent-encoded, so `../` or `?` never changes the path."""
    return quote(value, safe="")


def items_of(body: Any) -> list[dict[str, Any]]:
    """A list answer's rows: the `data` of the one list shape (docs/api-conventions.md), or a bare array (the
    cashier's admin channel list, not paged)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        rows: list[dict[str, Any]] = body["data"]
        return rows
    return []


@dataclass(frozen=True)
class OperatorApi:
    """The operator console's calls, on top of the member's `ConsoleApi` (web/clients/console.py)."""

    api: ConsoleApi

    async def _get(self, path: str, **params: Any) -> Any:
        return await self.api.get(path, **params)

    async def _write(self, method: str, path: str, body: dict[str, Any], key: str) -> Any:
        return await self.api.call(method, path, json=body, idempotency_key=key)

    # ---- merchants ------------------------------------------------------------------------------------------
    async def merchant(self, merchant_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._get(f"/v1/admin/merchants/{_seg(merchant_id)}")
        return found

    async def merchant_status(self, merchant_id: str) -> dict[str, Any]:
        """Suspended or not, why, and the changes (the gateway's own route; `platform.merchants.read`)."""
        standing: dict[str, Any] = await self._get(f"/v1/platform/merchants/{_seg(merchant_id)}/suspension")
        return standing

    async def set_standing(self, merchant_id: str, *, suspend: bool, reason: str) -> dict[str, Any]:
        """Suspend or resume (`platform.merchants.manage`); 409 `merchant_status_conflict` if it already is."""
        action = "suspension" if suspend else "resumption"
        changed: dict[str, Any] = await self.api.call(
            "POST", f"/v1/platform/merchants/{_seg(merchant_id)}/{action}", json={"reason": reason}
        )
        return changed

    # ---- the KYC review queue (the gateway's onboardings, docs/onboarding.md) --------------------------------
    async def onboardings(self, *, status: str, cursor: str | None) -> Any:
        return await self._get("/v1/platform/merchant-onboardings", status=status, cursor=cursor, limit=PAGE_LIMIT)

    async def retry_onboarding(self, onboarding_id: str) -> dict[str, Any]:
        retried: dict[str, Any] = await self.api.call(
            "POST", f"/v1/platform/merchant-onboardings/{_seg(onboarding_id)}/retry", json={}
        )
        return retried

    async def onboarding(self, onboarding_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._get(f"/v1/platform/merchant-onboardings/{_seg(onboarding_id)}")
        return found

    async def onboard(self, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        """The one-call onboarding as the operator (`platform.merchants.manage`): the answer holds the merchant's API
        key secret and webhook secret, the same on a repeat with the same key and body."""
        created: dict[str, Any] = await self._write("POST", "/v1/console/merchant-onboardings", body, key)
        return created

    async def review_held_kyc(self, onboarding_id: str, *, approve: bool, reason: str | None) -> dict[str, Any]:
        body = {"decision": "approve" if approve else "reject"} | ({"reason": reason} if reason else {})
        decided: dict[str, Any] = await self.api.call(
            "POST", f"/v1/console/merchant-onboardings/{_seg(onboarding_id)}/kyc-review", json=body
        )
        return decided

    async def merchant_channels(self, merchant_id: str) -> list[dict[str, Any]]:
        return items_of(await self._get(f"/v1/admin/merchants/{_seg(merchant_id)}/channels"))

    async def patch_channel(self, merchant_id: str, channel: str, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        """The cashier's partial update of one configuration (`mode`, `version` read; `enabled`, `priority`): its
        secrets are never sent, and a configuration changed meanwhile is 409 `channel_config_changed`."""
        path = f"/v1/admin/merchants/{_seg(merchant_id)}/channels/{_seg(channel)}"
        saved: dict[str, Any] = await self._write("PATCH", path, body, key)
        return saved

    async def contracts(self, merchant_id: str) -> list[dict[str, Any]]:
        return items_of(await self._get("/v1/contracts", merchant_id=merchant_id, limit=PAGE_LIMIT))

    async def contract(self, merchant_id: str, route_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._get(f"/v1/contracts/{_seg(merchant_id)}/{_seg(route_id)}")
        return found

    async def put_contract(self, merchant_id: str, route_id: str, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        """Routing's versioned contract write (`expected_version`: a contract changed meanwhile is 409)."""
        saved: dict[str, Any] = await self._write(
            "PUT", f"/v1/contracts/{_seg(merchant_id)}/{_seg(route_id)}", body, key
        )
        return saved

    async def fee_rates(self, *, merchant_id: str | None = None, route_id: str | None = None) -> list[dict[str, Any]]:
        return items_of(await self._get("/v1/fee-rates", merchant_id=merchant_id, route_id=route_id, limit=PAGE_LIMIT))

    async def fee_rate(self, rate_id: str) -> dict[str, Any]:
        rate: dict[str, Any] = await self._get(f"/v1/fee-rates/{_seg(rate_id)}")
        return rate

    async def expire_fee_rate(self, rate_id: str, *, valid_until: datetime, version: int, key: str) -> dict[str, Any]:
        body = {"valid_until": valid_until.isoformat(), "expected_version": version}
        expired: dict[str, Any] = await self._write("POST", f"/v1/fee-rates/{_seg(rate_id)}/expire", body, key)
        return expired

    async def create_fee_rate(self, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        created: dict[str, Any] = await self._write("POST", "/v1/fee-rates", body, key)
        return created

    # ---- special-rate programmes (routing's, docs/special-rates.md) -------------------------------------------
    async def merchant_profile(self, merchant_id: str) -> dict[str, Any] | None:
        """Routing's profile of the merchant (entity type, MCC: what the onboarding told it), or None without one."""
        try:
            found: dict[str, Any] = await self._get(f"/v1/merchant-profiles/{_seg(merchant_id)}")
        except GatewayProblem as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def put_merchant_profile(self, merchant_id: str, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        saved: dict[str, Any] = await self._write("PUT", f"/v1/merchant-profiles/{_seg(merchant_id)}", body, key)
        return saved

    async def eligibility(self, merchant_id: str) -> list[dict[str, Any]]:
        return items_of(await self._get(f"/v1/merchant-profiles/{_seg(merchant_id)}/special-rate-eligibility"))

    async def programmes(self) -> list[dict[str, Any]]:
        return items_of(await self._get("/v1/special-rate-programmes"))

    async def special_rate_applications(self, merchant_id: str, cursor: str | None) -> Any:
        return await self._get(
            "/v1/special-rate-applications", merchant_id=merchant_id, cursor=cursor, limit=PAGE_LIMIT
        )

    async def special_rate_application(self, application_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._get(f"/v1/special-rate-applications/{_seg(application_id)}")
        return found

    async def create_special_rate_application(self, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        created: dict[str, Any] = await self._write("POST", "/v1/special-rate-applications", body, key)
        return created

    async def move_special_rate_application(
        self, application_id: str, action: str, body: dict[str, Any], *, key: str
    ) -> dict[str, Any]:
        """`action`: submit | approve | reject (routing's named transitions, each a compare-and-set)."""
        moved: dict[str, Any] = await self._write(
            "POST", f"/v1/special-rate-applications/{_seg(application_id)}/{action}", body, key
        )
        return moved

    # ---- routing --------------------------------------------------------------------------------------------
    async def routes(self) -> list[dict[str, Any]]:
        return items_of(await self._get("/v1/channel-routes", limit=ROUTES_READ_MAX))

    async def route_health(self, route_id: str) -> dict[str, Any]:
        health: dict[str, Any] = await self._get(f"/v1/channel-routes/{_seg(route_id)}/health")
        return health

    async def simulate(self, question: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self._get("/v1/routing-simulations", **question)
        return answer

    # ---- settlement -----------------------------------------------------------------------------------------
    async def batches(self, holder_id: str | None) -> list[dict[str, Any]]:
        return items_of(await self._get("/v1/settlement/batches", holder_id=holder_id, limit=PAGE_LIMIT))

    async def payouts(self, *, holder_id: str | None, status: str | None, cursor: str | None) -> Any:
        return await self._get(
            "/v1/settlement/payouts", holder_id=holder_id, status=status, cursor=cursor, limit=PAGE_LIMIT
        )

    async def decide_payout(self, payout_id: str, action: str, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        """`action`: approve | reject (settlement's routes of the same names)."""
        decided: dict[str, Any] = await self._write(
            "POST", f"/v1/settlement/payouts/{_seg(payout_id)}/{action}", body, key
        )
        return decided

    async def cycle(self, holder_id: str) -> dict[str, Any]:
        cycle: dict[str, Any] = await self._get(f"/v1/settlement/merchants/{_seg(holder_id)}/cycle")
        return cycle

    async def calendar_schedule(self, month: str, holder_id: str | None) -> dict[str, Any]:
        schedule: dict[str, Any] = await self._get("/v1/settlement/calendar/schedule", month=month, holder_id=holder_id)
        return schedule

    async def savings(self, merchant_id: str | None) -> dict[str, Any]:
        report: dict[str, Any] = await self._get("/v1/special-rate-savings", merchant_id=merchant_id)
        return report

    async def consistency(self) -> dict[str, Any]:
        check: dict[str, Any] = await self._get("/v1/settlement/consistency")
        return check

    # ---- reconciliation exceptions pool ---------------------------------------------------------------------
    async def exceptions(self, *, state: str, assignee: str | None, merchant_id: str | None, cursor: str | None) -> Any:
        return await self._get(
            EXCEPTIONS, state=state, assignee=assignee, merchant_id=merchant_id, cursor=cursor, limit=PAGE_LIMIT
        )

    async def exception(self, item_id: int) -> dict[str, Any]:
        item: dict[str, Any] = await self._get(f"{EXCEPTIONS}/{item_id}")
        return item

    async def act_on_exception(self, item_id: int, action: str, body: dict[str, Any], *, key: str) -> dict[str, Any]:
        """`action`: assign | requery | resolve (settlement's routes of the same names)."""
        item: dict[str, Any] = await self._write("POST", f"{EXCEPTIONS}/{item_id}/{action}", body, key)
        return item

    # ---- ledger ---------------------------------------------------------------------------------------------
    async def accounts(self, holder_id: str) -> list[dict[str, Any]]:
        return items_of(await self._get("/v1/accounts", holder_id=holder_id, limit=PAGE_LIMIT))

    async def balance(self, account_id: str, as_of: datetime | None) -> dict[str, Any]:
        at = as_of.isoformat() if as_of else None
        balance: dict[str, Any] = await self._get(f"/v1/accounts/{_seg(account_id)}/balance", as_of=at)
        return balance

    async def statement(self, account_id: str, cursor: str | None) -> dict[str, Any]:
        """One page of the account's statement as the console shows it: its `entries` (the list's `data`) and
        the cursor of the next page."""
        page: dict[str, Any] = await self._get(
            f"/v1/accounts/{_seg(account_id)}/statement", cursor=cursor, limit=PAGE_LIMIT
        )
        return {**page, "entries": items_of(page)}

    async def wallet(self, holder_id: str) -> dict[str, Any]:
        """A wallet holder in one read (the ledger's, one snapshot): the holder with its KYC status and level and its
        documents masked, every sub-account with its status and balances, totals, open bills, recent entries."""
        wallet: dict[str, Any] = await self._get(f"/v1/wallet/holders/{_seg(holder_id)}/my-wallet", recent_limit=20)
        return wallet

    async def set_account_frozen(self, account_id: str, *, frozen: bool, key: str) -> dict[str, Any]:
        """The ledger's named state change (a repeat of the state it is in answers the account unchanged)."""
        action = "freeze" if frozen else "unfreeze"
        changed: dict[str, Any] = await self._write("POST", f"/v1/accounts/{_seg(account_id)}/{action}", {}, key)
        return changed

    # ---- platform health -------------------------------------------------------------------------------------
    async def platform_health(self) -> dict[str, Any]:
        health: dict[str, Any] = await self._get("/v1/platform/health")
        return health
