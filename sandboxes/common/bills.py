"""The discrepancies a test injects into a day's bill file, kept per day in the sandbox's store: what each
channel sandbox's `bills.py` applies to the true lines to make the file disagree on purpose (reconciliation
tests). The kinds and how a line is aimed at are the channel's own; the keeping is the same everywhere."""

from __future__ import annotations

from datetime import date

from sandboxes.common.store import Document, DocumentStore

DISCREPANCIES = "bill_discrepancies"


def discrepancies(store: DocumentStore, day: date) -> list[Document]:
    """The items injected into `day`'s bill, oldest first."""
    return list((store.get(DISCREPANCIES, day.isoformat()) or {"items": []})["items"])


def add_discrepancy(store: DocumentStore, day: date, item: Document) -> Document:
    """Append one item to `day`'s list (atomically); the whole list after it."""
    with store.transaction():
        current = store.get(DISCREPANCIES, day.isoformat()) or {"items": []}
        current["items"].append(item)
        store.put(DISCREPANCIES, day.isoformat(), current)
    return current


def clear_discrepancies(store: DocumentStore, day: date) -> None:
    store.delete(DISCREPANCIES, day.isoformat())
