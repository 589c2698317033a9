"""WeChat Pay API v3 connector: direct merchant and service-provider (partner) mode."""

from services.cashier.connectors.wechatpay.client import WechatPayConnector
from services.cashier.connectors.wechatpay.models import WechatPayConfig

__all__ = ["WechatPayConfig", "WechatPayConnector"]
