"""The error catalogue: every code marketing can answer is exercised by a test in this folder, and requests
without a valid gateway identity are refused before anything is read or written."""

from __future__ import annotations

from pathlib import Path

from services.marketing.domain.errors import ERRORS
from services.marketing.tests.integration.conftest import Marketing, code

HERE = Path(__file__).parent
CHANNEL_END_TO_END = HERE.parents[3] / "tests" / "e2e" / "test_channel_coupons.py"


def test_every_catalogue_code_is_asserted_by_a_test() -> None:
    sources = "".join(p.read_text() for p in HERE.glob("test_*.py") if p.name != Path(__file__).name)
    sources += Path(__file__).read_text().split("HERE =", 1)[1]
    sources += CHANNEL_END_TO_END.read_text()  # channel refusals need a real cashier and channel sandboxes
    untested = [spec.code for spec in ERRORS if f'"{spec.code}"' not in sources]
    assert untested == []


async def test_requests_without_a_valid_identity_are_refused(marketing: Marketing) -> None:
    claim = {"stock_id": "cps_x", "request_id": "r"}
    missing = await marketing.post("/v1/marketing/me/claims", claim, {})
    assert (missing.status_code, code(missing)) == (401, "identity_missing")
    forged = await marketing.post("/v1/marketing/me/claims", claim, {"X-Juhe-Identity": "v1.e30.AAAA"})
    assert (forged.status_code, code(forged)) == (401, "identity_invalid")
    listed = await marketing.get("/v1/marketing/me/coupons?status=gone", marketing.user())
    assert code(listed) == "validation_failed"
    too_big = await marketing.get("/v1/marketing/stocks?limit=100000", marketing.operator())
    assert code(too_big) == "validation_failed"
