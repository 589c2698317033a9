"""Moved to services/settlement/clients/cashier.py."""

from services.settlement.clients.cashier import (
    line_from_json as line_from_json,
)  # moved: services/settlement/clients/cashier.py; kept for perf's files (bench/reconciliation.py)
