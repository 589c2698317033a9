"""The platform wallet channel (the ledger's two-phase transfer, docs/ledger.md §3.2)."""

from services.cashier.connectors.wallet.client import WalletConnector
from services.cashier.connectors.wallet.models import WalletConfig

__all__ = ["WalletConfig", "WalletConnector"]
