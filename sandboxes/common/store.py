"""A tiny persistent JSON document store on stdlib sqlite3.

Sandboxes keep orders, refunds and bill tokens here so they survive a restart. It is deliberately
a key → JSON document table per collection, not a schema: each channel stores its own shapes and
filters in Python (sandbox volumes are tiny). Calls are synchronous and short; a lock makes the
one connection safe to share between the event loop and timer callbacks.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Document = dict[str, Any]
LIST_LIMIT_MAX = 100_000
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# One encoder for every write: `json.dumps` with options builds a new one per call (~2 us of a ~10 us write).
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


class DocumentStore:
    def __init__(self, path: Path | str) -> None:
        self._lock = threading.RLock()
        self._indexed_fields: set[str] = set()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS documents ("
            " collection TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,"
            " updated_at REAL NOT NULL, PRIMARY KEY (collection, key))"
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group reads and writes atomically (re-entrant within one thread)."""
        with self._lock:
            if self._conn.in_transaction:
                yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get(self, collection: str, key: str) -> Document | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM documents WHERE collection = ? AND key = ?", (collection, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, collection: str, key: str, document: Document) -> None:
        body = _encode(document)
        with self._lock:
            self._conn.execute(
                "INSERT INTO documents (collection, key, body, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (collection, key) DO UPDATE SET body = excluded.body,"
                " updated_at = excluded.updated_at",
                (collection, key, body, time.time()),
            )

    def insert_if_absent(self, collection: str, key: str, document: Document) -> bool:
        """Insert only if the key is new; True if inserted. The atomic 'create once' primitive."""
        body = _encode(document)
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO documents (collection, key, body, updated_at) VALUES (?, ?, ?, ?)",
                (collection, key, body, time.time()),
            )
            return cursor.rowcount == 1

    def update(self, collection: str, key: str, change: Callable[[Document], Document]) -> Document:
        """Read-modify-write under the lock; raises KeyError if the document does not exist."""
        with self.transaction():
            current = self.get(collection, key)
            if current is None:
                raise KeyError(key)
            updated = change(current)
            self.put(collection, key, updated)
            return updated

    def once(
        self,
        collection: str,
        key: str,
        fingerprint: str,
        act: Callable[[], Document],
        conflict: Callable[[], Exception],
    ) -> Document:
        """Idempotency by a request number (`key`): the first request's answer is kept with its
        fingerprint; the same request again gets that answer, another one under the key raises
        `conflict()`. `act` runs in the store transaction, so an `act` that raises leaves nothing."""
        with self.transaction():
            earlier = self.get(collection, key)
            if earlier is not None:
                if earlier["fingerprint"] != fingerprint:
                    raise conflict()
                answer: Document = earlier["answer"]
                return answer
            answer = act()
            self.put(collection, key, {"fingerprint": fingerprint, "answer": answer})
        return answer

    def delete(self, collection: str, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM documents WHERE collection = ? AND key = ?", (collection, key))

    def find(self, collection: str, field: str, value: str) -> list[Document]:
        """The documents whose top-level `field` equals `value`, in key order. The filter runs in SQLite on an
        expression index of that field (made the first time the field is searched), so a lookup stays a
        B-tree search however many documents the collection holds: a full scan with `json_extract` took
        ~5 ms at 5,000 trades and made a busy sandbox slower the longer it ran (docs/performance.md). The
        key order is applied here: an `ORDER BY key` makes SQLite walk the primary key instead of the index."""
        if not _FIELD_NAME.fullmatch(field):
            raise ValueError(f"not a top-level field name: {field!r}")
        path = f"'$.{field}'"  # a literal path, so the query's expression is the index's
        with self._lock:
            if field not in self._indexed_fields:
                self._conn.execute(
                    f"CREATE INDEX IF NOT EXISTS documents_by_{field}"
                    f" ON documents (collection, json_extract(body, {path}))"
                )
                self._indexed_fields.add(field)
            rows = self._conn.execute(
                f"SELECT key, body FROM documents WHERE collection = ? AND json_extract(body, {path}) = ?",
                (collection, value),
            ).fetchall()
        return [json.loads(body) for _, body in sorted(rows)]

    def list(self, collection: str, *, limit: int = LIST_LIMIT_MAX) -> list[Document]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT body FROM documents WHERE collection = ? ORDER BY key LIMIT ?",
                (collection, min(limit, LIST_LIMIT_MAX)),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]
