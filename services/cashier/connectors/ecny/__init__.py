"""e-CNY (digital RMB) through an acquiring bank, Juhe's model protocol: see client.EcnyConnector."""

from services.cashier.connectors.ecny.client import EcnyConnector
from services.cashier.connectors.ecny.models import WALLET_LIMITS_FEN, EcnyConfig

__all__ = ["WALLET_LIMITS_FEN", "EcnyConfig", "EcnyConnector"]
