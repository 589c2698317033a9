"""The cashier's per-payment statements on the unit of work's own asyncpg connection.

A statement through SQLAlchemy costs the cashier ~0.1 ms of CPU on top of asyncpg's own ~0.04 ms: its cache key,
the compiled-cache lookup, `construct_params`, the cursor adapter and the greenlet hop, the result's rows
(docs/performance.md, "Fifth pass: the common path", and "Sixth pass: the cashier's statements on asyncpg"). For
the few statements every payment runs (the create's insert, the first answer, the notification's read and
compare-and-set, each webhook try's record), `DriverStatement` compiles the store's Core construct ONCE, at import,
for the asyncpg dialect — the SQL text is exactly what SQLAlchemy would send — and runs it with asyncpg's
`fetch` on the same connection, inside the same transaction (or autocommit) as the unit of work's other statements.
The construct stays the one place the statement is written, next to the store function that owns it; every other
statement keeps SQLAlchemy.

Values are encoded and rows decoded exactly as through SQLAlchemy: bind values pass the same type's bind processor
(JSONB: `json.dumps`, so Python None is stored as JSON null, as today), and the rows come from the codecs
SQLAlchemy's asyncpg dialect installed on the connection (json/jsonb decoded with `json.loads`; timestamps, integers,
booleans and text as asyncpg returns them). A statement whose result columns would need a SQLAlchemy result
processor (Numeric, Enum, UUID …) is refused when it is built, so a decoding difference cannot slip in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from libs.common.db import driver_fetch

# The dialect the engine uses (`postgresql+asyncpg`, no custom JSON serializer: libs/common/db.py create_engine).
_DIALECT = asyncpg_dialect.dialect()
_REQUIRED = object()


class DriverStatement:
    """A Core statement compiled once for asyncpg, run on a unit of work's connection (see the module's docstring).

    `parameters` are passed by the statement's bind names, as to `conn.execute`; a bind with a value of its own
    (a literal in the construct, e.g. a status compared with) takes it unless given."""

    __slots__ = ("_binds", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a DriverStatement needs a statement whose text does not depend on its values")
        for column in compiled._result_columns or ():  # (keyname, name, objects, type)
            impl = column[3].dialect_impl(_DIALECT)
            if impl.result_processor(_DIALECT, None) is not None:
                raise ValueError(f"column {column[0]} needs SQLAlchemy's result processing: keep it on SQLAlchemy")
        binds: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            binds.append((name, processor, _REQUIRED if bind.required else bind.effective_value))
        self.sql = str(compiled)
        self._binds = tuple(binds)

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The positional arguments of the SQL text, each through its type's bind processor."""
        values = []
        for name, processor, default in self._binds:
            value = parameters[name] if default is _REQUIRED else parameters.get(name, default)
            values.append(value if processor is None else processor(value))
        return values

    async def fetch(self, conn: AsyncConnection, parameters: Mapping[str, Any]) -> list[asyncpg.Record]:
        """The rows, on the asyncpg connection under `conn`, in its transaction (libs/common/db.py `driver_fetch`: it
        begins the unit of work's transaction if this is its first statement, and invalidates a connection that
        broke under it)."""
        return await driver_fetch(conn, self.sql, *self.arguments(parameters))

    async def fetchrow(self, conn: AsyncConnection, parameters: Mapping[str, Any]) -> asyncpg.Record | None:
        rows = await self.fetch(conn, parameters)
        return rows[0] if rows else None

    async def execute(self, conn: AsyncConnection, parameters: Mapping[str, Any]) -> None:
        await self.fetch(conn, parameters)
