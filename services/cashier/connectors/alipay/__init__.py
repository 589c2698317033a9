"""Alipay OpenAPI v2 (RSA2) channel connector: see client.AlipayConnector."""

from services.cashier.connectors.alipay.client import AlipayConnector
from services.cashier.connectors.alipay.models import AlipayConfig, fen_to_yuan, yuan_to_fen

__all__ = ["AlipayConfig", "AlipayConnector", "fen_to_yuan", "yuan_to_fen"]
