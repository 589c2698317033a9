"""The one list shape of every Juhe list endpoint, and the page size bounded by `page_size_max`.

Every list answers `{"data": [...], "has_more": bool, "next_cursor": str | null}` (`ListPage`): a client pages
by passing `next_cursor` back as `cursor` until `has_more` is false. The route reads `limit + 1` rows, so
`has_more` is known without a count and a list of exactly `limit` rows does not end in an empty page.

Page size: `limit` above `page_size_max` is 422 `validation_failed` with `limit_max` (nothing read); without
`limit` the endpoint's default capped by that maximum. The store must not cap the limit again: a silent cap
would end paging early.

Query strings are strict on lists (`KnownQueryOnly`): a parameter the endpoint does not declare is 422
`unknown_parameter` rather than silently ignored, so a typo (`stauts=failed`) never returns an unfiltered page
that looks like an answer. A cursor the list never gave out, or a filter value outside its enum, is 422
`validation_failed` from the parameter's declared pattern or type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from libs.common.errors import UNKNOWN_PARAMETER, VALIDATION_FAILED, Problem

PAGE_SIZE_DEFAULT = 50
CURSOR_LENGTH_MAX = 128

T = TypeVar("T")


def page_limit(default: int = PAGE_SIZE_DEFAULT) -> Callable[..., int]:
    """A FastAPI dependency giving the `limit` of one page (see the module doc)."""

    def limit_of(request: Request, limit: Annotated[int | None, Query(ge=1)] = None) -> int:
        maximum = int(request.app.state.runtime.settings.page_size_max)
        if limit is None:
            return min(default, maximum)
        if limit > maximum:
            raise Problem(VALIDATION_FAILED, f"limit must be at most {maximum}", limit_max=maximum)
        return limit

    return limit_of


PageLimit = Annotated[int, Depends(page_limit())]


def cursor_query(pattern: str, *, description: str = "`next_cursor` of the previous page") -> Any:
    """The `cursor` parameter of a list whose cursors match `pattern` (anything else is 422, nothing read)."""
    return Query(pattern=pattern, max_length=CURSOR_LENGTH_MAX, description=description)


class ListPage(BaseModel, Generic[T]):
    """The one list shape (see the module doc). Subclass it per resource: `class XList(ListPage[XResponse])`."""

    data: list[T]
    has_more: bool = Field(description="More items follow: pass `next_cursor` as `cursor` to read them")
    next_cursor: str | None = Field(default=None, description="The `cursor` of the next page (null on the last)")

    @classmethod
    def of(cls, rows: Sequence[Any], limit: int, *, item: Callable[[Any], T], cursor_of: Callable[[T], str]) -> Self:
        """A page from `rows` read with `limit + 1`: the extra row only says that more follow."""
        page = [item(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return cls(data=page, has_more=has_more, next_cursor=cursor_of(page[-1]) if has_more else None)


KNOWN_QUERY_ATTRIBUTE = "_juhe_known_query"  # kept on the route itself: it lives and dies with its app


def _declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameter names (aliases) a route declares, its dependencies included; computed once."""
    known: frozenset[str] | None = getattr(route, KNOWN_QUERY_ATTRIBUTE, None)
    if known is None:
        names: set[str] = set()
        pending: list[Dependant] = [route.dependant]
        while pending:
            dependant = pending.pop()
            names.update(field.alias for field in dependant.query_params)
            pending.extend(dependant.dependencies)
        known = frozenset(names)
        setattr(route, KNOWN_QUERY_ATTRIBUTE, known)
    return known


async def reject_unknown_query(request: Request) -> None:
    """422 `unknown_parameter` for a query parameter the route does not declare (see the module doc). Async only
    so FastAPI calls it on the event loop instead of a worker thread (it does no I/O)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params.keys()) - _declared_query(route))
    if unknown:
        raise Problem(
            UNKNOWN_PARAMETER,
            f"unknown query parameter {', '.join(unknown)}; known: {', '.join(sorted(_declared_query(route)))}",
            parameters=unknown,
        )


KnownQueryOnly = Depends(reject_unknown_query)
