"""The page size of a list endpoint, bounded by the service's `page_size_max` setting.

One rule for every list: `limit` above `page_size_max` is 422 `validation_failed` with `limit_max` (nothing
read), without `limit` the endpoint's default capped by that maximum. The store must not cap the limit
again: a list answers `next_cursor` when it returned `limit` rows, so a silent cap would end paging early.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request

from libs.common.errors import VALIDATION_FAILED, Problem

PAGE_SIZE_DEFAULT = 50


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
