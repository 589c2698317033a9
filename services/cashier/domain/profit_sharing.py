"""Channel profit sharing (docs/contracts.md §2) as pure rules: how channel words map onto one vocabulary.

An order is `processing` until the channel reports every receiver line final; then `succeeded` when every
line succeeded, else `failed` (the receiver lines say which moved money and why the others did not).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ShareStatus(enum.StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# WeChat receiver `result` (docs/protocols/wechatpay.md §11) and Alipay settle detail `state`
# (docs/protocols/alipay.md §9). Unknown words stay processing: we keep asking rather than guess an outcome for money.
WECHAT_RESULTS = {"PENDING": ShareStatus.PROCESSING, "SUCCESS": ShareStatus.SUCCEEDED, "CLOSED": ShareStatus.FAILED}
ALIPAY_STATES = {"PROCESSING": ShareStatus.PROCESSING, "SUCCESS": ShareStatus.SUCCEEDED, "FAIL": ShareStatus.FAILED}

# WeChat asks for the receiver's relation to the merchant when binding it (receivers/add `relation_type`);
# docs/contracts.md §2 does not carry one, so the cashier names the closest fit per receiver type.
WECHAT_RELATION_OF_TYPE = {"MERCHANT_ID": "PARTNER", "PERSONAL_OPENID": "USER", "PERSONAL_SUB_OPENID": "USER"}
WECHAT_RELATION_DEFAULT = "PARTNER"


def line_status(channel: str, word: str) -> ShareStatus:
    table = WECHAT_RESULTS if channel == "wechatpay" else ALIPAY_STATES
    return table.get(word.upper(), ShareStatus.PROCESSING)


def order_status(lines: Sequence[ShareStatus], *, channel_final: bool = True) -> ShareStatus:
    if not lines or not channel_final or ShareStatus.PROCESSING in lines:
        return ShareStatus.PROCESSING
    return ShareStatus.SUCCEEDED if all(s is ShareStatus.SUCCEEDED for s in lines) else ShareStatus.FAILED
