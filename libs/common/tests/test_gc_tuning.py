"""The cyclic collector's settings a service process serves with (libs/common/runner.py `tune_gc`;
docs/performance.md, "Sixth pass: the sandboxes and the garbage collector")."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from libs.common.runner import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """tune_gc changes this whole process's collector: put it back as it was for the other tests."""
    thresholds = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    yield
    if frozen_before == 0:
        gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.me: _Node | None = None


@pytest.mark.usefixtures("restored_collector")
def test_start_up_garbage_is_collected_and_what_lives_is_frozen_out_of_later_collections() -> None:
    garbage = _Node()
    garbage.me = garbage  # a cycle only the collector frees
    gone = weakref.ref(garbage)
    del garbage
    kept = _Node()
    frozen_before = gc.get_freeze_count()

    tune_gc()

    assert gone() is None  # collected before the freeze, not frozen for the process's life
    assert gc.get_freeze_count() > frozen_before
    assert not any(obj is kept for obj in gc.get_objects())  # frozen: no collection walks it again
    assert gc.get_threshold() == GC_THRESHOLDS
