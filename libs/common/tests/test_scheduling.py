"""`make test`'s file scheduling: platform files rank above unit files, shared-platform files travel together."""

from __future__ import annotations

from libs.common.testing.scheduling import _HeaviestFirst, cost, shared_platform

PLATFORM_FILE = "tests/deploy/test_scale_out.py"  # starts the launcher
SHARED_FILE = "tests/e2e/test_payment_code_gateway.py"  # uses the session's demo platform
UNIT_FILE = "libs/common/tests/test_ids_money.py"


def test_a_platform_file_ranks_above_a_unit_file_with_many_more_tests() -> None:
    assert shared_platform(SHARED_FILE) == "demo_platform"
    assert shared_platform(UNIT_FILE) is None
    assert cost({PLATFORM_FILE}, 1) > cost({UNIT_FILE}, 60)
    assert cost({SHARED_FILE}, 1) > cost({UNIT_FILE}, 60)


def test_the_queue_hands_out_the_heaviest_unit_first_and_pops_from_the_back_as_a_dict_does() -> None:
    queue = _HeaviestFirst({"unit": {UNIT_FILE}, "platform": {PLATFORM_FILE}})
    queue["unit"] = {f"{UNIT_FILE}::t{i}": False for i in range(30)}
    queue["platform"] = {f"{PLATFORM_FILE}::t": False}
    queue["other"] = {"x.py::t": False}
    assert queue.popitem(last=False)[0] == "platform"
    assert queue.popitem(last=False)[0] == "unit"
    assert queue.popitem()[0] == "other"
