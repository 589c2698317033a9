"""Merchant access after a migration: every migrated merchant of a finalised run gets its gateway identity
with a live API key and a test one, and a routing contract per channel route the platform names, from the
channel sub-merchant ids the run kept (`wechatpay_sub_mchid`, `alipay_smid`). Then the merchant can take payments.
Why both keys: a migrated merchant is a real one (its live key takes real money once its channels are live), but
it integrates with Juhe's API for the first time, so it gets a test key too and can try everything against the
sandboxes first (docs/test-mode.md); each key's mode is written on its line of the credentials file.

Why after finalisation: until then the run can be reversed, and a merchant taking payments would make the
reversal wrong. Why a credentials file: the gateway shows an API key's secret once; the migration writes
it (mode 0600, appended and synced before anything is recorded) for the platform to hand over, and keeps
only the key id. Resumable and repeatable: what was done is recorded per merchant (`details.access`), so a
second run changes nothing; a merchant whose creation answered but was not recorded (a kill in between)
gets a fresh key (`POST /v1/platform/merchants/{id}/keys`) instead of a lost secret. A contract the
platform already set differently is never overwritten: it is listed as a conflict.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from libs.common.errors import Problem
from services.migration.clients.platform import PlatformClient
from services.migration.domain import errors as e
from services.migration.flows.runs import Migration, Progress, _no_progress, _require, run_lock
from services.migration.store import runs as store

CHANNEL_IDS = {"wechatpay": "wechatpay_sub_mchid", "alipay": "alipay_smid"}  # channel → the merchant file column
LIVE, TEST = "live", "test"  # the API keys' modes (docs/test-mode.md)


async def provision(
    m: Migration,
    platform: PlatformClient,
    run_id: str,
    *,
    routes: dict[str, str],
    credentials: Path,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Returns counts: merchants, keys_issued (live), test_keys_issued, contracts_created, contracts_existing, and
    the conflicts."""
    unknown = sorted(set(routes) - set(CHANNEL_IDS))
    if unknown:
        raise Problem(e.PROVISION_REFUSED, f"no channel {unknown[0]}: routes are given per {sorted(CHANNEL_IDS)}")
    run = await _require(m, run_id)
    if run["mode"] != "real" or run["status"] != "finalised":
        raise Problem(e.RUN_STATE_INVALID, f"run {run_id} is {run['status']}: merchants get access once finalised")
    result: dict[str, Any] = {
        "run_id": run_id,
        "merchants": 0,
        "keys_issued": 0,
        "test_keys_issued": 0,
        "contracts_created": 0,
        "contracts_existing": 0,
        "conflicts": [],
    }
    async with run_lock(m, run_id):
        after = 0
        while True:
            async with m.uow.read() as conn:
                page = await store.merchants_to_provision(conn, run_id, after=after, limit=m.batch_rows)
            if not page:
                break
            for row in page:
                await _merchant(m, platform, run_id, row, routes, credentials, result)
                result["merchants"] += 1
            after = int(page[-1]["record_no"])
            progress("access", 0, result["merchants"])
    return result


async def _merchant(
    m: Migration,
    platform: PlatformClient,
    run_id: str,
    row: Any,
    routes: dict[str, str],
    credentials: Path,
    result: dict[str, Any],
) -> None:
    merchant_id, details = str(row["juhe_id"]), dict(row["details"] or {})
    access = dict(details.get("access") or {})
    if "key_id" not in access:
        status, body = await platform.create_merchant(
            merchant_id, str(details.get("name") or merchant_id), key_mode=LIVE
        )
        if status == 201:
            key = body["api_key"]
            secrets = {"key_id": key["key_id"], "secret": key["secret"], "webhook_secret": body["webhook_secret"]}
        elif status == 409 and body.get("code") == "merchant_exists":  # created, then killed before recording
            key = await _new_key(platform, merchant_id, LIVE)
            secrets = {"key_id": key["key_id"], "secret": key["secret"]}
        else:
            raise Problem(e.PROVISION_REFUSED, f"gateway refused merchant {merchant_id}: {status} {body.get('code')}")
        _append_secret(
            credentials, {"merchant_id": merchant_id, "source_id": row["source_id"], "mode": LIVE, **secrets}
        )
        access["key_id"] = key["key_id"]
        result["keys_issued"] += 1
        await _record(m, run_id, row, {"key_id": key["key_id"]})
    if "test_key_id" not in access:  # a kill after the key but before this record: one more test key, harmless
        key = await _new_key(platform, merchant_id, TEST)
        _append_secret(
            credentials,
            {
                "merchant_id": merchant_id,
                "source_id": row["source_id"],
                "mode": TEST,
                "key_id": key["key_id"],
                "secret": key["secret"],
            },
        )
        access["test_key_id"] = key["key_id"]
        result["test_keys_issued"] += 1
        await _record(m, run_id, row, {"test_key_id": key["key_id"]})
    contracts = dict(access.get("contracts") or {})
    for channel, route_id in sorted(routes.items()):
        sub_merchant_id = details.get(CHANNEL_IDS[channel])
        if not sub_merchant_id or route_id in contracts:
            continue
        status, body = await platform.put_contract(merchant_id, route_id, str(sub_merchant_id))
        if status == 409 and body.get("code") == "version_conflict":  # exists: ours from a lost answer, or theirs
            status, body = await platform.contract(merchant_id, route_id)
            if status != 200 or body.get("sub_merchant_id") != sub_merchant_id:
                result["conflicts"].append(f"{merchant_id}/{route_id}: contract exists with another sub-merchant id")
                continue
            result["contracts_existing"] += 1
        elif status == 200:
            result["contracts_created"] += 1
        else:
            raise Problem(
                e.PROVISION_REFUSED, f"contract {merchant_id}/{route_id} refused: {status} {body.get('code')}"
            )
        contracts[route_id] = sub_merchant_id
        await _record(m, run_id, row, {"contracts": contracts})


async def _new_key(platform: PlatformClient, merchant_id: str, mode: str) -> dict[str, Any]:
    status, key = await platform.create_merchant_key(merchant_id, mode=mode)
    if status != 201:
        raise Problem(e.PROVISION_REFUSED, f"merchant {merchant_id}: a new {mode} key refused: {status}")
    return key


async def _record(m: Migration, run_id: str, row: Any, access: dict[str, Any]) -> None:
    async with m.uow.begin() as tx:
        await store.record_access(tx.conn, run_id, int(row["record_no"]), access)


def _append_secret(path: Path, line: dict[str, Any]) -> None:
    """One JSON line, readable by the owner only, on disk before the key id is recorded."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
