"""UnionPay online payment (全渠道, ACP 5.1.0) channel connector: see client.UnionPayConnector."""

from services.cashier.connectors.unionpay.client import UnionPayConnector
from services.cashier.connectors.unionpay.models import UnionPayConfig, order_id_of, txn_time_of

__all__ = ["UnionPayConfig", "UnionPayConnector", "order_id_of", "txn_time_of"]
