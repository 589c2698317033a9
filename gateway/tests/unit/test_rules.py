"""Pure gateway rules: sealing, idempotency decisions, access, rate-limit answers."""

from __future__ import annotations

import base64

import pytest

from gateway.config import DEFAULT_ROUTES
from gateway.domain import access, idempotency, ratelimit
from gateway.domain.access import Principal
from gateway.domain.credentials import CredentialSealer, CredentialSealError, hash_secret, new_secret, secret_matches
from libs.common.errors import Problem
from libs.common.sealing import new_sealing_key

KEY = base64.b64encode(bytes(range(32))).decode()


def test_sealed_secret_opens_only_with_its_key_and_row() -> None:
    sealer = CredentialSealer(KEY)
    sealed = sealer.seal("sk_secret", row_id="key_1")
    assert b"sk_secret" not in sealed
    assert sealer.open(sealed, row_id="key_1") == "sk_secret"
    with pytest.raises(CredentialSealError):
        sealer.open(sealed, row_id="key_2")
    with pytest.raises(CredentialSealError):
        CredentialSealer(base64.b64encode(bytes(32)).decode()).open(sealed, row_id="key_1")
    with pytest.raises(CredentialSealError):
        sealer.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), row_id="key_1")


def test_a_rotated_key_still_opens_what_the_old_key_sealed() -> None:
    """Key rotation: the new key seals, the old one (retired, by its id) still opens old values, version-1
    values (sealed before key ids) included; a value naming a key that is not configured does not open."""
    old = CredentialSealer(KEY)
    old_v2 = old.seal("whsec_old", row_id="we_1")
    legacy_v1 = b"\x01" + old_v2[2 + old_v2[1] :]  # the same nonce and ciphertext, in the layout before key ids
    new_key = new_sealing_key()
    rotated = CredentialSealer(new_key, key_id="k2", retired={"k1": KEY})
    assert rotated.open(old_v2, row_id="we_1") == "whsec_old" == rotated.open(legacy_v1, row_id="we_1")
    fresh = rotated.seal("whsec_new", row_id="we_1")
    assert rotated.key_id_of(fresh) == "k2" and rotated.needs_reseal(old_v2) and not rotated.needs_reseal(fresh)
    with pytest.raises(CredentialSealError, match="not configured"):
        old.open(fresh, row_id="we_1")
    with pytest.raises(ValueError):
        CredentialSealer(new_key, key_id="k1", retired={"k1": KEY})


def test_bearer_secrets_are_compared_by_hash() -> None:
    secret = new_secret("ak")
    assert secret.startswith("ak_") and len(secret) > 40
    assert secret_matches(secret, hash_secret(secret))
    assert not secret_matches(secret + "x", hash_secret(secret))


def _record(state: str, request_hash: bytes = b"h") -> idempotency.StoredRecord:
    return idempotency.StoredRecord(request_hash, state, 201, {"content-type": "application/json"}, b"{}")  # type: ignore[arg-type]


def test_idempotency_decisions() -> None:
    assert idempotency.decide(_record("done"), b"h").response_status == 201
    with pytest.raises(Problem) as err:
        idempotency.decide(_record("done"), b"other")
    assert err.value.spec.code == "idempotency_key_reused"
    with pytest.raises(Problem) as err:
        idempotency.decide(_record("in_progress"), b"h")
    assert err.value.spec.code == "idempotency_key_in_progress"
    assert err.value.extensions["retry_after_seconds"] == 1
    with pytest.raises(Problem) as err:
        idempotency.decide(_record("in_progress"), b"other")
    assert err.value.spec.code == "idempotency_key_reused"


def test_idempotency_key_validation_and_fingerprint() -> None:
    with pytest.raises(Problem) as err:
        idempotency.validate_key(None)
    assert err.value.spec.code == "idempotency_key_missing"
    for bad in ("", "x" * 256, "tab\there", "ключ"):
        with pytest.raises(Problem) as err:
            idempotency.validate_key(bad)
        assert err.value.spec.code == "idempotency_key_invalid"
    f = idempotency.fingerprint
    assert f("POST", "/v1/a", b"{}") == f("post", "/v1/a", b"{}")
    assert f("POST", "/v1/a", b"{}") != f("POST", "/v1/a?x=1", b"{}")
    assert f("POST", "/v1/ab", b"c") != f("POST", "/v1/a", b"bc")  # length-prefixed parts


def test_routing_table_and_access() -> None:
    routes = {"/v1/payments": "cashier", "/v1/accounts": "ledger", "/v1/accounts/special": "routing"}
    assert access.resolve_service("/v1/payments", routes, ()) == "cashier"
    assert access.resolve_service("/v1/payments/pay_1/refunds", routes, ()) == "cashier"
    assert access.resolve_service("/v1/accounts/special/x", routes, ()) == "routing"
    for path in ("/v1/paymentsx", "/v2/payments", "/v1/route"):
        with pytest.raises(Problem) as err:
            access.resolve_service(path, {**routes, "/v1/route": "routing"}, ("/v1/route",))
        assert err.value.spec.code == "route_not_found"
    merchant = Principal("merchant", "key_1", "plt_1", merchant_id="mch_1")
    user = Principal("user", "utk_1", "plt_1", user_id="usr_1")
    platform = Principal("platform", "key_2", "plt_1")
    rules = {"platform_only_prefixes": ("/v1/platform",), "user_prefixes": ("/v1/wallets",)}
    access.authorize(merchant, "/v1/payments", **rules)
    access.authorize(platform, "/v1/platform/merchants", **rules)
    access.authorize(user, "/v1/wallets/w_1", **rules)
    for who, path in ((merchant, "/v1/platform/merchants"), (user, "/v1/payments"), (user, "/v1/platform/x")):
        with pytest.raises(Problem) as err:
            access.authorize(who, path, **rules)
        assert err.value.spec.code == "route_forbidden"
    assert access.route_class("GET", "/v1/payments", ("/v1/platform",)) == "read"
    assert access.route_class("POST", "/v1/payments", ("/v1/platform",)) == "write"
    assert access.route_class("GET", "/v1/platform/x", ("/v1/platform",)) == "admin"
    assert merchant.scope == "merchant:mch_1" and user.scope == "user:usr_1"


def _estimate_after(previous: int, current: int, elapsed: float, window: int, later: float) -> float:
    """The sliding estimate `later` seconds from now if nothing is admitted meanwhile (windows roll over)."""
    e = elapsed + later
    if e < window:
        return ratelimit.estimate(
            previous_hits=previous, current_hits=current, elapsed_seconds=e, window_seconds=window
        )
    if e < 2 * window:
        return ratelimit.estimate(
            previous_hits=current, current_hits=0, elapsed_seconds=e - window, window_seconds=window
        )
    return 0.0


def test_rate_limit_answer_says_when_to_retry() -> None:
    ratelimit.check(
        admitted=True, limit=5, previous_hits=9, current_hits=5, window_start=60, window_seconds=60, now_epoch=100.0
    )
    with pytest.raises(Problem) as err:  # current window full: wait into the next one until 5 × (W − e′)/W + 1 ≤ 5
        ratelimit.check(
            admitted=False,
            limit=5,
            previous_hits=0,
            current_hits=5,
            window_start=60,
            window_seconds=60,
            now_epoch=100.2,
        )
    assert err.value.spec.code == "rate_limited"
    assert err.value.extensions["retry_after_seconds"] == 32  # 19.8 s to the boundary + 12 s into the next
    with pytest.raises(Problem) as err:  # the previous window's weight still fills the limit: 10 × 30/60 = 5
        ratelimit.check(
            admitted=False, limit=5, previous_hits=10, current_hits=0, window_start=60, window_seconds=60, now_epoch=90
        )
    assert err.value.extensions["retry_after_seconds"] == 6  # 10 × 24/60 + 1 = 5


def test_sliding_window_refuses_the_boundary_burst_a_fixed_window_allowed() -> None:
    # 100 requests at the very end of one window: a fixed window admits 100 more right after the boundary.
    burst = ratelimit.estimate(previous_hits=100, current_hits=0, elapsed_seconds=0.5, window_seconds=60)
    assert burst + 1 > 100
    assert ratelimit.estimate(previous_hits=100, current_hits=0, elapsed_seconds=60, window_seconds=60) == 0


@pytest.mark.parametrize("limit", [1, 2, 5, 100])
@pytest.mark.parametrize("window", [1, 7, 60])
def test_retry_after_is_the_first_whole_second_at_which_a_request_fits(limit: int, window: int) -> None:
    """Whenever a request is refused, waiting Retry-After seconds admits it, and one second less would not."""
    checked = 0
    for previous in (0, 1, limit, 3 * limit + 1):
        for current in range(0, limit + 1):
            for tenth in range(0, 10 * window, max(1, window)):
                elapsed = tenth / 10
                now = ratelimit.estimate(
                    previous_hits=previous, current_hits=current, elapsed_seconds=elapsed, window_seconds=window
                )
                if now + 1 <= limit:
                    continue  # would be admitted
                wait = ratelimit.retry_after_seconds(
                    previous_hits=previous,
                    current_hits=current,
                    limit=limit,
                    elapsed_seconds=elapsed,
                    window_seconds=window,
                )
                assert _estimate_after(previous, current, elapsed, window, wait) + 1 <= limit + 1e-9
                if wait > 1:
                    assert _estimate_after(previous, current, elapsed, window, wait - 1) + 1 > limit
                checked += 1
    assert checked > 0


def test_prefix_index_answers_like_the_scan() -> None:
    prefixes = [*DEFAULT_ROUTES, "/v1/route", "/v1/internal", "/", "/v1/x/", "/v1/x", "/v1/a//b"]
    index = access.PrefixIndex(prefixes)
    paths = [
        "/",
        "",
        "/v1",
        "/v1/",
        "/v1/payments",
        "/v1/payments/",
        "/v1/payments/pay_1/refunds",
        "/v1/paymentsx",
        "/v1/notify/bank",
        "/v1/notify/bank/x",
        "/v1/notify/wechat",
        "/v1/x",
        "/v1/x/",
        "/v1/x//y",
        "/v1//payments",
        "/v1/a//b",
        "/v1/a//b/c",
        "/v1/a/b",
        "v1/payments",
        "/v1/settlement/runs?x=1",
    ]
    for path in paths:
        assert access.match_prefix(path, index) == access.match_prefix(path, prefixes), path
    routes_only = access.PrefixIndex(DEFAULT_ROUTES)
    assert access.match_prefix("/v1/notify/bank/cb", routes_only) == "/v1/notify/bank"
    assert access.match_prefix("/v2/payments", routes_only) is None


def test_the_first_match_proxy_route_leaves_the_gateways_own_routes_to_the_router() -> None:
    from starlette.routing import Match

    from gateway.api.routes import internal, platform, proxy

    route = proxy.FirstMatchProxyRoute(proxy.own_prefixes([platform.router, internal.router]))

    def match(method: str, path: str) -> Match:
        return route.matches({"type": "http", "method": method, "path": path})[0]

    assert match("POST", "/v1/payments") == Match.FULL
    assert route.matches({"type": "http", "method": "GET", "path": "/v1/a/b"})[1]["path_params"] == {"path": "a/b"}
    assert match("GET", "/v1/platform/merchants/mch_1") == Match.NONE
    assert match("GET", "/v1/platform") == Match.NONE
    assert match("GET", "/v1/platformer") == Match.FULL
    assert match("OPTIONS", "/v1/payments") == Match.NONE  # the router answers (405), as before
    assert match("GET", "/livez") == Match.NONE and match("GET", "/internal/v1/x") == Match.NONE
