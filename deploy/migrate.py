"""`python -m deploy.migrate [--wait SECONDS] [service ...]`: run, or wait for, services' migrations.

Without `--wait` it upgrades each named service's database to head (a Kubernetes Job per service, the
compose one-shot). Only one migrator should run per database at a time: Alembic takes no lock, so the
Job has `parallelism: 1` and the compose `migrate` service runs once.

With `--wait SECONDS` it changes nothing: it polls until each database is at the head revision of the
code in this image and exits 0, or exits 1 when the time is up. Deployments run it as an initContainer,
so a pod of a new release never starts against a schema the migration Job has not brought up yet
(however the Job was triggered: Argo CD PreSync hook, `kubectl apply` + `kubectl wait`, CI).

The database URL comes from `JUHE_<SERVICE>_DATABASE_URL`, the same variable the service reads.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from libs.common.migrations import current_revisions, script_heads, upgrade
from libs.common.services import SERVICES

WAIT_POLL_SECONDS = 2.0


def head_revisions(service: str) -> set[str]:
    """The head revision(s) of the migrations shipped in this image."""
    return script_heads(SERVICES[service].migrations_dir)


async def wait_for_head(service: str, database_url: str, timeout_seconds: float) -> bool:
    """True once the database is at this image's head; False after `timeout_seconds` (bounded polling)."""
    wanted = head_revisions(service)
    deadline = time.monotonic() + timeout_seconds
    while True:
        if await current_revisions(database_url) == wanted:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def database_url_of(service: str) -> str:
    url: str = SERVICES[service].settings_class()().database_url
    return url


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.migrate")
    parser.add_argument("services", nargs="*", help=f"default: every service ({', '.join(SERVICES)})")
    parser.add_argument("--wait", type=float, metavar="SECONDS", help="only wait until the schema is at head")
    args = parser.parse_args(argv)
    names: list[str] = args.services or list(SERVICES)
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        parser.error(f"unknown service(s) {unknown}; known: {list(SERVICES)}")
    for name in names:
        url = database_url_of(name)
        if args.wait is not None:
            if not asyncio.run(wait_for_head(name, url, args.wait)):
                print(f"{name}: schema not at head {sorted(head_revisions(name))} after {args.wait:g} s")
                return 1
            print(f"{name}: schema at head")
        else:
            upgrade(SERVICES[name].migrations_dir, url)
            print(f"{name}: migrated")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
