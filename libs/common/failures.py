"""What a failure means for the caller: the request's own unstorable text (422), or an outage of the
database or the broker (503, retryable), whatever layer noticed it (SQLAlchemy, asyncpg, a socket, aiokafka).

Kept free of FastAPI so the write paths (the ledger's batching writer) classify failures the same way as the
HTTP handlers in `libs.common.web`.
"""

from __future__ import annotations

import asyncpg
import httpx
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NoBrokersAvailable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from libs.common import errors

# SQLSTATEs PostgreSQL raises for text it cannot store: 22021 character_not_in_repertoire ("invalid byte
# sequence for encoding UTF8: 0x00"), 22P05 untranslatable_character (jsonb "\u0000 cannot be converted") and
# 22P02 invalid_text_representation (a value that does not parse as its column's type: jsonb with a lone
# surrogate escape, text in a numeric column).
UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05", "22P02"})
# SQLSTATE classes and codes of a database that cannot serve right now: 08 connection exception, 53
# insufficient resources (too many connections, out of memory, disk full), 57P01-57P05 operator
# intervention (admin/crash shutdown, cannot connect now, database dropped, idle session timeout).
OUTAGE_SQLSTATE_PREFIXES = ("08", "53", "57P")
_DATABASE_MODULES = ("asyncpg", "sqlalchemy")
_BROKER_MODULES = ("aiokafka", "kafka")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, the driver error SQLAlchemy keeps as `orig`, and their causes/contexts, each once."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen) or len(seen) >= 16:
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        todo.extend([orig if isinstance(orig, BaseException) else None, current.__cause__, current.__context__])
    return seen


def is_unstorable_text_error(exc: BaseException) -> bool:
    """Whether `exc` (asyncpg's error, SQLAlchemy's DBAPIError around it, or the encoder's) is text refused.

    SQLAlchemy's asyncpg adapter copies the SQLSTATE onto its own exception (`orig.sqlstate`) and chains the
    asyncpg error as `__cause__`; asyncpg reports a str it cannot encode (a lone surrogate) as a DataError
    caused by UnicodeEncodeError. Every layer is looked at, so any wrapping is recognised.
    """
    for current in _chain(exc):
        if isinstance(current, (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)):
            return True
        if isinstance(current, UnicodeEncodeError) and "surrogate" in str(current.reason):
            return True
        if getattr(current, "sqlstate", None) in UNSTORABLE_TEXT_SQLSTATES:
            return True
    return False


def _frame_modules(exc: BaseException) -> set[str]:
    """The modules of `exc`'s traceback frames: which code noticed the failure."""
    modules: set[str] = set()
    tb = exc.__traceback__
    while tb is not None:
        modules.add(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return modules


def _raised_in(exc: BaseException, packages: tuple[str, ...]) -> bool:
    return any(module.split(".", 1)[0] in packages for module in _frame_modules(exc))


def _is_database_outage(exc: BaseException) -> bool:
    if isinstance(exc, SQLAlchemyTimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError):
        return True  # "connection is closed", a protocol break; not a value the driver could not encode
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATE_PREFIXES):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        # Refused while connecting: 55000 "database is not currently accepting connections", a database that
        # is being dropped or recreated. The same SQLSTATEs from a query are a bug, not an outage.
        return "asyncpg.connect_utils" in _frame_modules(exc)
    # The socket under the driver failed: ConnectionRefusedError from connect (asyncpg raises it unwrapped,
    # and SQLAlchemy passes it through), a reset, asyncpg's pool and command timeouts (TimeoutError).
    return isinstance(exc, OSError) and _raised_in(exc, _DATABASE_MODULES)


def _is_broker_outage(exc: BaseException) -> bool:
    if isinstance(exc, KafkaError):
        return isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable)) or bool(exc.retriable)
    return isinstance(exc, OSError) and _raised_in(exc, _BROKER_MODULES)


def outage_spec(exc: BaseException) -> errors.ErrorSpec | None:
    """`database_unavailable` / `broker_unavailable` when `exc` (or what it wraps) is that dependency being
    down or unreachable, `service_unavailable` for a peer service that could not be reached (an httpx
    transport error no flow handled); None for anything else (a bug stays a 500)."""
    chain = _chain(exc)
    for current in chain:
        if _is_database_outage(current):
            return errors.DATABASE_UNAVAILABLE
        if _is_broker_outage(current):
            return errors.BROKER_UNAVAILABLE
    if any(isinstance(current, httpx.TransportError) for current in chain):
        return errors.SERVICE_UNAVAILABLE
    return None
