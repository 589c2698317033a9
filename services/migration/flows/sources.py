"""Streaming the source files: CSV or JSONL, UTF-8 or GBK, one record at a time (bounded memory).

Why GB 18030 for "GBK": it is GBK's superset (every GBK file decodes the same), and Chinese exports labelled
GBK often hold a few GB 18030-only characters in names. Auto-detection reads the whole file once in chunks
with an incremental UTF-8 decoder (a GBK file is almost never valid UTF-8 beyond ASCII); the same pass counts
the records for the progress bar's total and computes the file's SHA-256 (a run is tied to its files).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20
ENCODINGS = ("utf-8", "gbk")
RECORD_BYTES_MAX = 64 * 1024  # one CSV field or JSON line beyond this is not a holder record


class SourceInvalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    format: str  # csv | jsonl
    encoding: str  # utf-8 | gbk (as declared or detected)
    sha256: str
    records: int  # data records (CSV: lines after the header; an estimate if a field spans lines)

    @property
    def python_encoding(self) -> str:
        return "utf-8-sig" if self.encoding == "utf-8" else "gb18030"


def inspect(path: Path, encoding: str = "auto") -> SourceFile:
    """Format from the suffix, encoding declared or detected, SHA-256 and record count, in one pass."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise SourceInvalid(f"{path.name}: a source file is .csv or .jsonl")
    if encoding not in ("auto", *ENCODINGS):
        raise SourceInvalid(f"encoding is auto, utf-8 or gbk, not {encoding!r}")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    lines = 0
    last = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
                lines += chunk.count(b"\n")
                last = chunk
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
    except OSError as exc:
        raise SourceInvalid(f"{path}: {exc.strerror}") from None
    if last and not last.endswith(b"\n"):
        lines += 1
    detected = "utf-8" if utf8 else "gbk"
    if encoding == "utf-8" and not utf8:
        raise SourceInvalid(f"{path.name} is declared UTF-8 but is not valid UTF-8")
    records = max(lines - 1, 0) if suffix == ".csv" else lines
    return SourceFile(path, suffix[1:], detected if encoding == "auto" else encoding, digest.hexdigest(), records)


def records(source: SourceFile, *, skip: int = 0) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(record number from 1, record) after the first `skip` records; None for a line that is not a record
    (bad JSON, wrong column count): the flow rejects it with its number, it never stops the run."""
    csv.field_size_limit(RECORD_BYTES_MAX)
    with source.path.open("r", encoding=source.python_encoding, newline="") as f:
        if source.format == "csv":
            yield from _csv_records(f, skip)
        else:
            yield from _jsonl_records(f, skip)


def _csv_records(f: Any, skip: int) -> Iterator[tuple[int, dict[str, Any] | None]]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    for number, values in enumerate(reader, start=1):
        if number <= skip:
            continue
        if not values or values == [""]:
            continue
        yield number, dict(zip(header, values, strict=True)) if len(values) == len(header) else None


def _jsonl_records(f: Any, skip: int) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for number, line in enumerate(f, start=1):
        if number <= skip or not line.strip():
            continue
        try:
            value = json.loads(line) if len(line) <= RECORD_BYTES_MAX else None
        except ValueError:
            value = None
        yield number, value if isinstance(value, dict) else None


def control_records(path: Path, encoding: str = "auto") -> list[dict[str, str]]:
    """The control file is small (a line per kind and currency): read whole."""
    source = inspect(path, encoding)
    if source.format != "csv":
        raise SourceInvalid("the control file is CSV: record,currency,count,amount_minor")
    return [r for _, r in records(source) if r is not None]
