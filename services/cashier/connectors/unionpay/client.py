"""UnionPay online payment (全渠道, ACP 5.1.0) connector over httpx.AsyncClient.

Flows (docs/protocols/unionpay.md §4):
* consume: web (`PaymentScene.PAGE`, channelType 07) and mobile web (`PaymentScene.H5`, channelType 08) return a
  signed auto-submit form for the browser to POST to `frontTransReq.do`; app (`PaymentScene.APP`) calls
  `appTransReq.do` server-side and returns the `tn` the UnionPay app SDK needs;
* query (`queryTrans.do`): `respCode` is the query call's own status, `origRespCode` the queried
  transaction's (00 success; 03/04/05 unknown → query again; 34 no such transaction);
* refund (退货, txnType 04, partial) and revoke (消费撤销, txnType 31, same day, full) are separate
  transactions with their own `orderId` naming the consume by its `queryId` (`origQryId`);
* the daily settlement file (file transfer, txnType 76) and the encryption-key update (txnType 95).

Error mapping (what the cashier sees):
* transport errors, timeouts, non-200 HTTP, unreadable bodies → ChannelUnavailable;
* a signed answer whose certificate or signature fails, or a `00` answer without a signature →
  InvalidSignature;
* respCode 03/04/05 on consume/app → ChannelError(retryable=True); on refund/revoke → PENDING (the
  refund may have happened: query it);
* any other non-00 respCode → ChannelError(code="UNIONPAY_<code>").
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from html import escape
from urllib.parse import urlencode

import httpx

from services.cashier.connectors.base import (
    Bill,
    ChannelError,
    ChannelUnavailable,
    InvalidSignature,
    Notification,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundResult,
    RefundStatus,
    TradeQueryResult,
    TradeStatus,
)
from services.cashier.connectors.http import channel_client
from services.cashier.connectors.unionpay import signing
from services.cashier.connectors.unionpay.bills import BillFormatError, decode_file_content, parse_file_zip
from services.cashier.connectors.unionpay.certificates import (
    CertificateError,
    ChainVerifier,
    SigningIdentity,
    load_pfx,
)
from services.cashier.connectors.unionpay.models import (
    ACCESS_TYPE_MERCHANT,
    APP_PATH,
    BACK_PATH,
    BEIJING,
    BIZ_TYPE_B2C,
    BIZ_TYPE_NONE,
    CHANNEL_MOBILE,
    CHANNEL_PC,
    CURRENCY_CODE_CNY,
    ENCODING,
    FILE_PATH,
    FRONT_PATH,
    QUERY_PATH,
    RESP_NO_SUCH_TXN,
    RESP_SUCCESS,
    RESP_UNKNOWN,
    SIGN_METHOD_RSA,
    TXN_CONSUME,
    TXN_FILE,
    TXN_KEY_UPDATE,
    TXN_QUERY,
    TXN_REFUND,
    TXN_REVOKE,
    VERSION,
    AmountError,
    UnionPayConfig,
    fen_to_txn_amt,
    format_txn_time,
    order_id_of,
    txn_time_of,
)
from services.cashier.connectors.unionpay.notifications import (
    decode_form,
    notification_from_fields,
    payment_from_fields,
    refund_from_fields,
    verify_message,
)
from services.cashier.domain.payments import PaymentScene

RESPONSE_BODY_MAX_BYTES = 8 * 1024 * 1024  # the file transfer answer carries the whole zip
SUPPORTED_CURRENCY = "CNY"
RESP_DUPLICATE = "12"  # 重复交易: this orderId was used already
QUERY_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0)  # for query_until_final on 03/04/05


def _utc_now() -> datetime:
    return datetime.now(UTC)


def auto_submit_html(action: str, fields: dict[str, str]) -> str:
    """The page the payer's browser loads: a form that POSTs itself to frontTransReq.do."""
    inputs = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
    return (
        '<!DOCTYPE html><html><head><meta charset="UTF-8"><title>UnionPay</title></head>'
        f'<body onload="document.forms[0].submit()"><form method="post" action="{escape(action)}">'
        f'{inputs}<noscript><button type="submit">继续 Continue</button></noscript>'
        "</form></body></html>"
    )


class UnionPayConnector:
    """The UnionPay channel for one merId. Share one instance (and its connection pool) per merchant."""

    channel = "unionpay"

    def __init__(
        self,
        config: UnionPayConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._clock = clock
        try:
            pfx = base64.b64decode(config.sign_pfx_base64.get_secret_value(), validate=True)
        except ValueError as exc:
            raise ValueError("sign_pfx_base64 is not Base64") from exc
        self._identity: SigningIdentity = load_pfx(pfx, config.sign_pfx_password.get_secret_value())
        self._verifier = ChainVerifier(
            config.root_cert_pem, config.middle_cert_pem, validate_cn_name=config.validate_cn_name
        )
        self.encrypt_cert_pem = config.encrypt_cert_pem
        self._owns_client = http_client is None
        self._http = http_client or channel_client(
            read_timeout_seconds=config.read_timeout_seconds, connect_timeout_seconds=config.connect_timeout_seconds
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    @property
    def cert_id(self) -> str:
        return self._identity.cert_id

    # ------------------------------------------------------------------ wire

    def _fields(self, txn_type: str, txn_sub_type: str, biz_type: str, **extra: str | None) -> dict[str, str]:
        base: dict[str, str | None] = {
            "version": VERSION,
            "encoding": ENCODING,
            "signMethod": SIGN_METHOD_RSA,
            "certId": self.cert_id,
            "txnType": txn_type,
            "txnSubType": txn_sub_type,
            "bizType": biz_type,
            "accessType": ACCESS_TYPE_MERCHANT,
            "merId": self._config.mer_id,
            **extra,
        }
        return signing.sign(base, self._identity.private_key)

    async def _post(self, path: str, fields: dict[str, str], *, base_url: str | None = None) -> dict[str, str]:
        """POST a signed form; the answer verified (a signed answer) or an unsigned refusal (never 00)."""
        url = (base_url or self._config.base_url).rstrip("/") + path
        try:
            response = await self._http.post(
                url,
                content=urlencode(fields).encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
            )
        except httpx.HTTPError as exc:
            raise ChannelUnavailable(f"unionpay {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise ChannelUnavailable(f"unionpay {path}: HTTP {response.status_code}")
        if len(response.content) > RESPONSE_BODY_MAX_BYTES:
            raise ChannelUnavailable(f"unionpay {path}: answer too large")
        try:
            answer = signing.parse_kv(response.content.decode("utf-8"))
        except (UnicodeDecodeError, signing.ResponseFormatError) as exc:
            raise ChannelUnavailable(f"unionpay {path}: unreadable answer ({exc})") from exc
        if "respCode" not in answer:
            raise ChannelUnavailable(f"unionpay {path}: answer without respCode")
        if signing.SIGNATURE_FIELD in answer:
            verify_message(answer, self._verifier, self._config.mer_id)
        elif answer["respCode"] == RESP_SUCCESS:
            raise InvalidSignature(f"unionpay {path}: unsigned success answer")
        return answer

    @staticmethod
    def _refused(what: str, answer: dict[str, str]) -> ChannelError:
        code = answer.get("respCode", "")
        return ChannelError(
            f"UNIONPAY_{code}", f"unionpay {what}: {answer.get('respMsg', '')}"[:300], retryable=code in RESP_UNKNOWN
        )

    @staticmethod
    def _amount(amount_minor: int, currency: str) -> str:
        if currency != SUPPORTED_CURRENCY:
            raise ChannelError("CURRENCY_NOT_SUPPORTED", f"unionpay settles CNY only, not {currency}")
        try:
            return fen_to_txn_amt(amount_minor)
        except AmountError as exc:
            raise ChannelError("INVALID_AMOUNT", str(exc)) from exc

    @staticmethod
    def _ids(number: str) -> tuple[str, str]:
        try:
            return order_id_of(number), txn_time_of(number)
        except ValueError as exc:
            raise ChannelError("INVALID_ORDER_ID", str(exc)) from exc

    # ------------------------------------------------------------------ consume

    async def prepay(self, request: PrepayRequest) -> PrepayResult:
        """Web/mobile: the signed auto-submit form; app: the `tn` from appTransReq."""
        if request.scene not in (PaymentScene.PAGE, PaymentScene.H5, PaymentScene.APP):
            raise ChannelError("SCENE_NOT_SUPPORTED", f"unionpay has no {request.scene} flow in this connector")
        order_id, txn_time = self._ids(request.out_trade_no)
        expire_at = request.expire_at or self._clock() + timedelta(minutes=self._config.pay_timeout_minutes)
        fields = self._fields(
            TXN_CONSUME,
            "01",
            BIZ_TYPE_B2C,
            channelType=CHANNEL_PC if request.scene is PaymentScene.PAGE else CHANNEL_MOBILE,
            orderId=order_id,
            txnTime=txn_time,
            txnAmt=self._amount(request.amount_minor, request.currency),
            currencyCode=CURRENCY_CODE_CNY,
            backUrl=request.notify_url,
            frontUrl=request.return_url if request.scene is not PaymentScene.APP else None,
            payTimeout=format_txn_time(expire_at),
            reqReserved=request.attach,
            riskRateInfo="{commodityName=" + request.description[:50] + "}" if request.description else None,
        )
        if request.scene is PaymentScene.APP:
            answer = await self._post(APP_PATH, fields)
            if answer["respCode"] != RESP_SUCCESS:
                raise self._refused("appTransReq", answer)
            if not answer.get("tn"):
                raise ChannelUnavailable("unionpay appTransReq: success without tn")
            return PrepayResult(payer_action={"type": "app", "tn": answer["tn"]})
        action = self._config.base_url.rstrip("/") + FRONT_PATH
        return PrepayResult(
            payer_action={
                "type": "form",
                "form": {"action": action, "method": "POST", "fields": fields},
                "html": auto_submit_html(action, fields),
            }
        )

    async def _query(self, number: str) -> dict[str, str]:
        order_id, txn_time = self._ids(number)
        answer = await self._post(
            QUERY_PATH, self._fields(TXN_QUERY, "00", BIZ_TYPE_NONE, orderId=order_id, txnTime=txn_time)
        )
        code = answer["respCode"]
        if code not in (RESP_SUCCESS, RESP_NO_SUCH_TXN):
            raise self._refused("queryTrans", answer)
        return answer

    async def query(self, out_trade_no: str) -> TradeQueryResult:
        """origRespCode 00 → SUCCEEDED, 03/04/05 → PENDING, other → FAILED; respCode 34 → NOT_FOUND."""
        answer = await self._query(out_trade_no)
        if answer["respCode"] == RESP_NO_SUCH_TXN:
            return TradeQueryResult(status=TradeStatus.NOT_FOUND, out_trade_no=out_trade_no, detail="34")
        if answer.get("txnType", TXN_CONSUME) != TXN_CONSUME:
            raise ChannelError("NOT_A_CONSUME", f"unionpay order {out_trade_no} is not a consume")
        result = payment_from_fields(answer, answer.get("origRespCode", ""))
        return TradeQueryResult(
            status=result.status,
            out_trade_no=out_trade_no,
            channel_trade_no=result.channel_trade_no,
            amount_minor=result.amount_minor,
            paid_at=result.paid_at,
            detail=result.detail,
        )

    async def query_until_final(
        self, out_trade_no: str, *, backoff_seconds: tuple[float, ...] = QUERY_BACKOFF_SECONDS
    ) -> TradeQueryResult:
        """Query again with backoff while the outcome is unknown (03/04/05); the last answer otherwise."""
        result = await self.query(out_trade_no)
        for delay in backoff_seconds:
            if result.status is not TradeStatus.PENDING:
                break
            await asyncio.sleep(delay)
            result = await self.query(out_trade_no)
        return result

    async def close(self, out_trade_no: str) -> None:
        """UnionPay has no close: an unpaid consume lapses at its `payTimeout`. Refuses if already paid."""
        result = await self.query(out_trade_no)
        if result.status is TradeStatus.SUCCEEDED:
            raise ChannelError("ORDER_PAID", f"unionpay order {out_trade_no} is paid")

    # ------------------------------------------------------------------ refund and revoke

    async def _return(self, request: RefundRequest, txn_type: str) -> RefundResult:
        original = await self.query(request.out_trade_no)
        if original.status is not TradeStatus.SUCCEEDED or not original.channel_trade_no:
            raise ChannelError("ORDER_NOT_PAID", f"unionpay order {request.out_trade_no} is {original.status}")
        order_id, txn_time = self._ids(request.out_refund_no)
        fields = self._fields(
            txn_type,
            "00",
            BIZ_TYPE_B2C,
            channelType=CHANNEL_PC,
            orderId=order_id,
            txnTime=txn_time,
            txnAmt=self._amount(request.refund_minor, request.currency),
            currencyCode=CURRENCY_CODE_CNY,
            origQryId=original.channel_trade_no,
            backUrl=request.notify_url,
            reqReserved=f"{request.out_refund_no}|{request.out_trade_no}",
        )
        answer = await self._post(BACK_PATH, fields)
        code = answer["respCode"]
        if code == RESP_DUPLICATE:
            return await self.query_refund(request.out_refund_no, request.out_trade_no)
        if code != RESP_SUCCESS and code not in RESP_UNKNOWN:
            raise self._refused("refund" if txn_type == TXN_REFUND else "revoke", answer)
        return RefundResult(
            status=RefundStatus.PENDING,
            out_refund_no=request.out_refund_no,
            out_trade_no=request.out_trade_no,
            channel_refund_no=answer.get("queryId") or None,
            refund_minor=request.refund_minor,
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        """退货 (partial allowed): 00 = accepted → PENDING; the result comes by notification or query_refund."""
        return await self._return(request, TXN_REFUND)

    def revocable(self, request: RefundRequest) -> bool:
        """Whether `revoke` applies: the full amount, asked on the consume's own (Beijing) day."""
        if request.refund_minor != request.total_minor:
            return False
        try:
            _order_id, txn_time = order_id_of(request.out_trade_no), txn_time_of(request.out_trade_no)
        except ValueError:
            return False
        return txn_time[:8] == self._clock().astimezone(BEIJING).strftime("%Y%m%d")

    async def revoke(self, request: RefundRequest) -> RefundResult:
        """消费撤销: the full amount, on the consume's own day (Beijing); no fee is charged. Else refund()."""
        if request.refund_minor != request.total_minor:
            raise ChannelError("REVOKE_FULL_ONLY", "a revoke returns the full amount; use refund")
        if not self.revocable(request):
            self._ids(request.out_trade_no)  # an unusable order number says so first
            raise ChannelError("REVOKE_SAME_DAY_ONLY", "a revoke is possible on the consume's day only")
        return await self._return(request, TXN_REVOKE)

    async def query_refund(self, out_refund_no: str, out_trade_no: str) -> RefundResult:
        answer = await self._query(out_refund_no)
        if answer["respCode"] == RESP_NO_SUCH_TXN:
            return RefundResult(status=RefundStatus.NOT_FOUND, out_refund_no=out_refund_no, out_trade_no=out_trade_no)
        if answer.get("txnType") not in (TXN_REFUND, TXN_REVOKE):
            raise ChannelError("NOT_A_REFUND", f"unionpay order {out_refund_no} is not a refund or revoke")
        return refund_from_fields(
            answer, answer.get("origRespCode", ""), out_refund_no=out_refund_no, out_trade_no=out_trade_no
        )

    # ------------------------------------------------------------------ notifications

    def parse_notification(self, headers: dict[str, str], body: bytes) -> Notification:
        fields = decode_form(body)
        verify_message(fields, self._verifier, self._config.mer_id)
        return notification_from_fields(fields)

    def parse_return(self, params: dict[str, str]) -> TradeQueryResult:
        """Verify the frontUrl POST (same rules as a notification); a hint for the browser flow only."""
        verify_message(params, self._verifier, self._config.mer_id)
        return payment_from_fields(params, params.get("respCode", ""))

    # ------------------------------------------------------------------ key update and files

    async def update_encryption_cert(self) -> str:
        """txnType 95: fetch UnionPay's current encryption certificate (checked against the chain)."""
        now = self._clock()
        order_id = f"K{now.astimezone(BEIJING):%Y%m%d%H%M%S%f}"
        fields = self._fields(
            TXN_KEY_UPDATE, "00", BIZ_TYPE_NONE, certType="01", orderId=order_id, txnTime=format_txn_time(now)
        )
        answer = await self._post(BACK_PATH, fields)
        if answer["respCode"] != RESP_SUCCESS:
            raise self._refused("key update", answer)
        pem = answer.get("encryptPubKeyCert", "")
        try:
            self._verifier.encryption_certificate(pem)
        except CertificateError as exc:
            raise InvalidSignature(f"encryptPubKeyCert refused: {exc}") from exc
        self.encrypt_cert_pem = pem
        return pem

    async def download_bill(self, bill_date: date) -> Bill:
        """File transfer (txnType 76, fileType 00) for settleDate MMDD → the ZM file's lines."""
        fields = self._fields(
            TXN_FILE,
            "01",
            BIZ_TYPE_NONE,
            fileType="00",
            settleDate=f"{bill_date:%m%d}",
            txnTime=format_txn_time(self._clock()),
        )
        answer = await self._post(FILE_PATH, fields, base_url=self._config.file_base_url)
        if answer["respCode"] != RESP_SUCCESS:
            raise self._refused("file transfer", answer)
        try:
            return parse_file_zip(
                decode_file_content(answer.get("fileContent", "")),
                bill_date,
                self._config.mer_id,
                self._config.refund_number_prefix,
            )
        except BillFormatError as exc:
            raise ChannelUnavailable(f"unionpay file transfer: unreadable settlement file ({exc})") from exc
