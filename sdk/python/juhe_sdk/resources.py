"""The API's resources, one thin class per family of paths, shared by `Client` and `AsyncClient`.

A resource only builds a path and calls its client's `request` / `paginate`: with `Client` a method
returns the value, with `AsyncClient` the same method returns an awaitable (and `list` an async
iterator), so the two clients cannot drift apart. Anything not covered by a named method is one call
away with the generic verbs (`get`, `post`, `put`, `delete`, `child`) or `client.request(...)`.

Fields are passed through as given (`purpose`, `split`, `profit_sharing`, … need no SDK release); path
segments are percent-encoded; every write carries an `Idempotency-Key` (yours, or a fresh UUID kept
across retries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

PAGE_SIZE_DEFAULT = 50

if TYPE_CHECKING:
    from collections.abc import Mapping


class Requester(Protocol):
    """What a resource needs from a client (`Client` or `AsyncClient`)."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int = PAGE_SIZE_DEFAULT,
        cursor_param: str = "cursor",
    ) -> Any: ...


def _segment(value: object) -> str:
    return quote(str(value), safe="")


class Resource:
    """A collection at `path`: `create`, `retrieve`, `list` (auto-paginating), `update`, `delete`, `action`."""

    cursor_param = "cursor"

    def __init__(self, client: Requester, path: str) -> None:
        self._client = client
        self.path = path.rstrip("/")

    def url(self, *parts: object) -> str:
        return self.path + "".join("/" + _segment(part) for part in parts)

    def child(self, *parts: object) -> Resource:
        """A sub-collection: `payments.child(pay_id, "refunds").create(...)`."""
        return Resource(self._client, self.url(*parts))

    # Generic verbs on this path or below it.
    def get(self, *parts: object, **params: Any) -> Any:
        return self._client.request("GET", self.url(*parts), params=params or None)

    def post(self, *parts: object, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._client.request("POST", self.url(*parts), json=fields, idempotency_key=idempotency_key)

    def put(self, *parts: object, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._client.request("PUT", self.url(*parts), json=fields, idempotency_key=idempotency_key)

    def delete(self, *parts: object, idempotency_key: str | None = None) -> Any:
        return self._client.request("DELETE", self.url(*parts), idempotency_key=idempotency_key)

    def paginate(self, *parts: object, page_size: int = PAGE_SIZE_DEFAULT, **params: Any) -> Any:
        return self._client.paginate(self.url(*parts), params, page_size=page_size, cursor_param=self.cursor_param)

    # The usual names.
    def create(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self.post(idempotency_key=idempotency_key, **fields)

    def retrieve(self, resource_id: str, **params: Any) -> Any:
        return self.get(resource_id, **params)

    def list(self, *, page_size: int = PAGE_SIZE_DEFAULT, **params: Any) -> Any:
        """Every item, following `next_cursor` (an iterator; `async for` with `AsyncClient`)."""
        return self.paginate(page_size=page_size, **params)

    def update(self, resource_id: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self.put(resource_id, idempotency_key=idempotency_key, **fields)

    def action(self, resource_id: str, action: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        """`client.payments.action(pay_id, "close")` → POST /v1/payments/{id}/close."""
        return self.post(resource_id, action, idempotency_key=idempotency_key, **fields)


# ---- cashier ---------------------------------------------------------------------------------------


class Payments(Resource):
    """`/v1/payments`: create (any field passes through: `purpose`, `split`, `profit_sharing`, …), read, list."""

    def close(self, payment_id: str, *, idempotency_key: str | None = None) -> Any:
        return self.action(payment_id, "close", idempotency_key=idempotency_key)

    def confirm(self, payment_id: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self.action(payment_id, "confirm", idempotency_key=idempotency_key, **fields)

    def refund(self, payment_id: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        """POST /v1/payments/{id}/refunds (`amount_minor`, `reason`, …)."""
        return self.post(payment_id, "refunds", idempotency_key=idempotency_key, **fields)

    def refunds(self, payment_id: str) -> Any:
        """The refunds of one payment."""
        return self.get(payment_id, "refunds")

    def webhook_deliveries(self, payment_id: str) -> Any:
        return self.get(payment_id, "webhook-deliveries")


class WebhookDeliveries(Resource):
    def resend(self, delivery_id: str, *, idempotency_key: str | None = None) -> Any:
        return self.action(delivery_id, "resend", idempotency_key=idempotency_key)


class WebhookEndpoints(Resource):
    """`/v1/webhook-endpoints`: the merchant's webhook endpoints (the `secret` is answered by `create` and
    `rotate_secret` only; docs/webhooks.md)."""

    def update(self, resource_id: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        """PATCH: only the fields given change (`url`, `enabled_events`, `enabled`, `description`)."""
        return self._client.request("PATCH", self.url(resource_id), json=fields, idempotency_key=idempotency_key)

    def rotate_secret(
        self, endpoint_id: str, *, overlap_seconds: int | None = None, idempotency_key: str | None = None
    ) -> Any:
        """A new secret; the old one keeps signing too for `overlap_seconds` (the API's default: 24 h)."""
        fields = {} if overlap_seconds is None else {"overlap_seconds": overlap_seconds}
        return self.action(endpoint_id, "rotate-secret", idempotency_key=idempotency_key, **fields)


class CashierMerchants(Resource):
    """`/v1/admin/merchants` (platform): the cashier's merchant profile and channel configuration."""

    def set_channel(self, merchant_id: str, channel: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self.put(merchant_id, "channels", channel, idempotency_key=idempotency_key, **fields)

    def channels(self, merchant_id: str) -> Any:
        return self.get(merchant_id, "channels")


# ---- settlement: merchants' statements and payouts --------------------------------------------------


class Statements(Resource):
    """`/v1/statements` (merchant scope)."""

    def current(self) -> Any:
        return self.get("current")

    def transactions_csv(self, *, date_from: str | None = None, date_to: str | None = None) -> Any:
        """The CSV text of the merchant's transactions (`from`/`to` are ISO dates)."""
        params = {k: v for k, v in (("from", date_from), ("to", date_to)) if v is not None}
        return self._client.request("GET", self.url("transactions.csv"), params=params or None)

    def batches(self, *, page_size: int = PAGE_SIZE_DEFAULT, **params: Any) -> Any:
        """Every settlement batch of the merchant, newest first."""
        return self.paginate("batches", page_size=page_size, **params)


# ---- ledger: wallet ----------------------------------------------------------------------------------


class WalletHolder:
    """One wallet holder's paths under `/v1/wallet/holders/{holder_id}`."""

    def __init__(self, client: Requester, holder_id: str) -> None:
        self._at = Resource(client, f"/v1/wallet/holders/{_segment(holder_id)}")

    def retrieve(self) -> Any:
        return self._at.get()

    def my_wallet(self) -> Any:
        """Balances, points, cards and recent activity: what a "My Wallet" page shows."""
        return self._at.get("my-wallet")

    def history(self, account_id: str, *, page_size: int = PAGE_SIZE_DEFAULT, **params: Any) -> Any:
        return self._at.paginate("subaccounts", account_id, "history", page_size=page_size, **params)

    def submit_kyc(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("kyc", idempotency_key=idempotency_key, **fields)

    def create_top_up_order(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        """Top up through the cashier: answers the cashier payment to pay (its `payer_action`: `qr_code`, `url`, …)."""
        return self._at.post("top-up-orders", idempotency_key=idempotency_key, **fields)

    def retrieve_top_up_order(self, order_id: str) -> Any:
        return self._at.get("top-up-orders", order_id)

    def top_up(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        """A direct top-up (platform only)."""
        return self._at.post("top-ups", idempotency_key=idempotency_key, **fields)

    def withdraw(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("withdrawals", idempotency_key=idempotency_key, **fields)

    def pay(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("payments", idempotency_key=idempotency_key, **fields)

    def transfer(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("transfers", idempotency_key=idempotency_key, **fields)

    def issue_prepaid_card(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("prepaid-cards", idempotency_key=idempotency_key, **fields)

    def grant_points(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("points", "grants", idempotency_key=idempotency_key, **fields)

    def exchange_points(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("points", "exchanges", idempotency_key=idempotency_key, **fields)

    def set_credit_line(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.put("credit-line", idempotency_key=idempotency_key, **fields)

    def create_bill(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._at.post("bills", idempotency_key=idempotency_key, **fields)


class Wallet:
    """`/v1/wallet/...`: holders, KYC, top-up orders, withdrawals, payments, cards, points, transfers, bills."""

    def __init__(self, client: Requester) -> None:
        self._client = client
        self.holders = Resource(client, "/v1/wallet/holders")
        self.operations = Resource(client, "/v1/wallet/operations")
        self.bills = Resource(client, "/v1/wallet/bills")
        self.entitlement_changes = Resource(client, "/v1/wallet/entitlements/changes")
        self._root = Resource(client, "/v1/wallet")

    def holder(self, holder_id: str) -> WalletHolder:
        return WalletHolder(self._client, holder_id)

    def my_wallet(self, holder_id: str) -> Any:
        return self.holder(holder_id).my_wallet()

    def entitlements(self, **params: Any) -> Any:
        return self._root.get("entitlements", **params)

    def post_operation(self, operation_id: str, *, idempotency_key: str | None = None) -> Any:
        return self.operations.action(operation_id, "post", idempotency_key=idempotency_key)

    def void_operation(self, operation_id: str, *, idempotency_key: str | None = None) -> Any:
        return self.operations.action(operation_id, "void", idempotency_key=idempotency_key)

    def repay_bill(self, bill_id: str, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self.bills.post(bill_id, "repayments", idempotency_key=idempotency_key, **fields)

    def merchant_balances(self, merchant_id: str) -> Any:
        return self._root.get("merchants", merchant_id, "balances")

    def kyc_callback(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self._root.post("kyc", "callbacks", idempotency_key=idempotency_key, **fields)


# ---- ledger: accounts and transfers (platform) -----------------------------------------------------------


class Accounts(Resource):
    def balance(self, account_id: str) -> Any:
        return self.get(account_id, "balance")

    def statement(self, account_id: str, *, page_size: int = PAGE_SIZE_DEFAULT, **params: Any) -> Any:
        return self.paginate(account_id, "statement", page_size=page_size, **params)


class Transfers(Resource):
    def batch(self, *, idempotency_key: str | None = None, **fields: Any) -> Any:
        return self.post("batch", idempotency_key=idempotency_key, **fields)


# ---- gateway: platform operations -----------------------------------------------------------------------


class Platform:
    """`/v1/platform/...` (platform bearer): merchants, their API keys, users and user tokens."""

    def __init__(self, client: Requester) -> None:
        self.merchants = Resource(client, "/v1/platform/merchants")
        self.keys = Resource(client, "/v1/platform/keys")
        self.users = Resource(client, "/v1/platform/users")

    def create_merchant_key(self, merchant_id: str, **fields: Any) -> Any:
        return self.merchants.post(merchant_id, "keys", **fields)

    def rotate_key(self, key_id: str, *, overlap_seconds: int, **fields: Any) -> Any:
        return self.keys.action(key_id, "rotate", overlap_seconds=overlap_seconds, **fields)

    def revoke_key(self, key_id: str) -> Any:
        return self.keys.action(key_id, "revoke")

    def issue_user_token(self, user_id: str, **fields: Any) -> Any:
        return self.users.post(user_id, "tokens", **fields)


# ---- settlement administration (platform) -----------------------------------------------------------------


class Settlement:
    """`/v1/settlement/...` (platform only)."""

    def __init__(self, client: Requester) -> None:
        self._client = client
        self._root = Resource(client, "/v1/settlement")
        self.receivers = Resource(client, "/v1/settlement/receivers")
        self.payments = Resource(client, "/v1/settlement/payments")
        self.runs = Resource(client, "/v1/settlement/runs")
        self.batches = Resource(client, "/v1/settlement/batches")
        self.reconciliations = Resource(client, "/v1/settlement/reconciliations")
        self.reconciliation_items = Resource(client, "/v1/settlement/reconciliation-items")
        self.payouts = Resource(client, "/v1/settlement/payouts")
        self.calendar = Resource(client, "/v1/settlement/calendar")

    def merchant(self, merchant_id: str) -> Resource:
        """`/v1/settlement/merchants/{id}`: `.get("split-rule")`, `.put("fee-rate", …)`, `.put("cycle", …)`."""
        return self._root.child("merchants", merchant_id)

    def split_rule(self, merchant_id: str) -> Any:
        return self.merchant(merchant_id).get("split-rule")

    def set_split_rule(self, merchant_id: str, **fields: Any) -> Any:
        return self.merchant(merchant_id).put("split-rule", **fields)

    def set_fee_rate(self, merchant_id: str, **fields: Any) -> Any:
        return self.merchant(merchant_id).put("fee-rate", **fields)

    def cycle(self, merchant_id: str) -> Any:
        return self.merchant(merchant_id).get("cycle")

    def set_cycle(self, merchant_id: str, **fields: Any) -> Any:
        return self.merchant(merchant_id).put("cycle", **fields)

    def confirm_payment(self, payment_id: str, **fields: Any) -> Any:
        return self.payments.action(payment_id, "confirm", **fields)

    def reconciliation_report(self, **params: Any) -> Any:
        return self._root.get("reconciliation-report", **params)


# ---- routing administration (platform) --------------------------------------------------------------------


class FeeRates(Resource):
    def expire(self, rate_id: str, **fields: Any) -> Any:
        return self.action(rate_id, "expire", **fields)


class Rules(Resource):
    def history(self, rule_id: str, *, page_size: int = PAGE_SIZE_DEFAULT, **params: Any) -> Any:
        return self.paginate(rule_id, "history", page_size=page_size, **params)


class Routing:
    """`/v1/channel-routes`, `/v1/fee-rates`, `/v1/contracts`, `/v1/rules`, `/v1/routing-settings`, `/v1/audit`."""

    def __init__(self, client: Requester) -> None:
        self.channel_routes = Resource(client, "/v1/channel-routes")
        self.fee_rates = FeeRates(client, "/v1/fee-rates")
        self.contracts = Resource(client, "/v1/contracts")
        self.rules = Rules(client, "/v1/rules")
        self.audit = Resource(client, "/v1/audit")
        self._settings = Resource(client, "/v1/routing-settings")

    def route_health(self, route_id: str) -> Any:
        return self.channel_routes.get(route_id, "health")

    def contract(self, merchant_id: str, route_id: str) -> Any:
        return self.contracts.get(merchant_id, route_id)

    def set_contract(self, merchant_id: str, route_id: str, **fields: Any) -> Any:
        return self.contracts.put(merchant_id, route_id, **fields)

    def settings(self) -> Any:
        return self._settings.get()

    def update_settings(self, **fields: Any) -> Any:
        return self._settings.put(**fields)


def attach_resources(client: Any) -> None:
    """Give a client every resource; called by `Client` and `AsyncClient`."""
    client.payments = Payments(client, "/v1/payments")
    client.refunds = Resource(client, "/v1/refunds")
    client.webhook_deliveries = WebhookDeliveries(client, "/v1/webhook-deliveries")
    client.webhook_endpoints = WebhookEndpoints(client, "/v1/webhook-endpoints")
    client.events = Resource(client, "/v1/events")
    client.statements = Statements(client, "/v1/statements")
    client.payouts = Resource(client, "/v1/payouts")
    client.wallet = Wallet(client)
    client.accounts = Accounts(client, "/v1/accounts")
    client.transfers = Transfers(client, "/v1/transfers")
    client.platform = Platform(client)
    client.settlement = Settlement(client)
    client.routing = Routing(client)
    client.cashier_merchants = CashierMerchants(client, "/v1/admin/merchants")
