"""`python -m deploy.dead_letters <service> list | replay ID… | replay --all`: the operator's side of the inbox.

A consumer that keeps failing an event parks it in its database's `inbox_dead_letter` table (payload,
topic, partition, offset, error) so one poison event cannot stall a partition. Once the cause is fixed,
`replay` publishes each stored payload again to the same topic and *partition* (the row keeps no key, and
the partition is what keeps the aggregate's order), waits for the broker's acknowledgement (acks=all),
then deletes the row. A crash between the two leaves the row, and replaying it again is harmless: the
inbox drops an event id it has already applied. Settings (database URL, bootstrap servers) are the
service's own `JUHE_<SERVICE>_*` variables, so it runs from any pod of that service (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from libs.common.db import asyncpg_dsn
from libs.common.kafka import make_producer
from libs.common.services import SERVICES


async def list_rows(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return list(
            await conn.fetch(
                'SELECT id, event_id, topic, partition, "offset", error, failed_at FROM inbox_dead_letter ORDER BY id'
            )
        )
    finally:
        await conn.close()


async def replay(database_url: str, bootstrap: str, ids: list[int] | None) -> list[int]:
    """Re-publish and delete the given rows (None: all of them); returns the ids replayed, in order."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    producer = make_producer(bootstrap)
    await producer.start()
    replayed: list[int] = []
    try:
        rows = await conn.fetch(
            "SELECT id, topic, partition, payload FROM inbox_dead_letter WHERE $1::bigint[] IS NULL OR id = ANY($1) "
            "ORDER BY id",
            ids,
        )
        for row in rows:
            await producer.send_and_wait(row["topic"], bytes(row["payload"]), partition=row["partition"])
            await conn.execute("DELETE FROM inbox_dead_letter WHERE id = $1", row["id"])
            replayed.append(row["id"])
    finally:
        await producer.stop()
        await conn.close()
    return replayed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dead_letters")
    parser.add_argument("service", choices=list(SERVICES))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the parked events and why they failed")
    replay_parser = commands.add_parser("replay", help="publish parked events again, then delete them")
    replay_parser.add_argument("ids", nargs="*", type=int)
    replay_parser.add_argument("--all", action="store_true", help="every parked event")
    args = parser.parse_args(argv)
    settings = SERVICES[args.service].settings_class()()
    if args.command == "list":
        for row in asyncio.run(list_rows(settings.database_url)):
            print(
                f"{row['id']}\t{row['event_id']}\t{row['topic']}[{row['partition']}]@{row['offset']}\t"
                f"{row['failed_at'].isoformat()}\t{row['error']}"
            )
        return 0
    if bool(args.ids) == bool(args.all):
        parser.error("replay needs either ids or --all")
    done = asyncio.run(replay(settings.database_url, settings.kafka_bootstrap_servers, args.ids or None))
    print(f"replayed {len(done)}: {' '.join(map(str, done))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
