"""Configuration of one WeChat Pay merchant credential set (direct merchant or service provider)."""

from __future__ import annotations

from dataclasses import dataclass, field

PRODUCTION_BASE_URL = "https://api.mch.weixin.qq.com"
CLOCK_SKEW_SECONDS_MAX = 300  # WeChat SDKs reject a response timestamp 5 minutes or more away
# docs/protocols/wechatpay.md §7 is unsure of the spelling [L]; refunds answer RESOURCE_NOT_EXISTS. Accept all.
NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS", "NOT_FOUND"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WechatPayConfig:
    """Credentials and endpoints. Direct mode: `mchid` + `appid`. Partner (service-provider) mode:
    `sp_mchid` + `sp_appid` + `sub_mchid` (+ optional `sub_appid`); the service provider signs.

    How WeChat is verified: public-key mode (`platform_public_key_pem` + `platform_public_key_id`
    `PUB_KEY_ID_...`, given, never downloaded) and/or platform-certificate mode: certificates are
    downloaded from `/v3/certificates` (decrypted with the APIv3 key) whenever a reply names a serial
    we do not hold, so a rotation needs no configuration; `platform_certificates_pem` may preload
    them (callbacks are verified synchronously and cannot download). A reply naming the public key id
    uses the public key, any other serial a certificate, as wechatpay-go's combined verifier does.
    """

    merchant_private_key_pem: str = field(repr=False)
    merchant_cert_serial: str
    apiv3_key: str = field(repr=False)
    platform_public_key_pem: str | None = field(default=None, repr=False)
    platform_public_key_id: str | None = None
    platform_certificates_pem: tuple[str, ...] | list[str] = ()
    mchid: str | None = None
    appid: str | None = None
    sp_mchid: str | None = None
    sp_appid: str | None = None
    sub_mchid: str | None = None
    sub_appid: str | None = None
    base_url: str = PRODUCTION_BASE_URL
    # Web authorisation (公众号网页授权) for a JSAPI payer's openid (connectors/wechatpay/oauth.py): the appid's
    # AppSecret, and WeChat's two hosts (None: production's, or `base_url` when that is a sandbox's one origin).
    app_secret: str | None = field(default=None, repr=False)
    oauth_authorize_base_url: str | None = None  # https://open.weixin.qq.com
    oauth_api_base_url: str | None = None  # https://api.weixin.qq.com
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 10.0
    clock_skew_seconds_max: int = CLOCK_SKEW_SECONDS_MAX
    user_agent: str = "juhe-cashier/0.1 (WechatPay-APIv3)"
    bill_gzip: bool = True

    def __post_init__(self) -> None:
        if self.partner:
            if not (self.sp_appid and self.sub_mchid):
                raise ValueError("partner mode needs sp_mchid, sp_appid and sub_mchid")
        elif not (self.mchid and self.appid):
            raise ValueError("direct mode needs mchid and appid (or sp_mchid/sp_appid/sub_mchid)")
        if bool(self.platform_public_key_pem) != bool(self.platform_public_key_id):
            raise ValueError("platform_public_key_pem and platform_public_key_id go together")
        if len(self.apiv3_key.encode("utf-8")) != 32:
            raise ValueError("apiv3_key must be 32 bytes")

    @property
    def partner(self) -> bool:
        return bool(self.sp_mchid)

    @property
    def signing_mchid(self) -> str:
        """The mchid in the Authorization header: the service provider's in partner mode."""
        value = self.sp_mchid if self.partner else self.mchid
        assert value is not None
        return value

    @property
    def certificate_mode(self) -> bool:
        """No platform public key: every reply is verified with a downloaded platform certificate."""
        return not self.platform_public_key_id

    @property
    def payer_appid(self) -> str:
        """The appid the payer's client works in (JSAPI/app signatures): sub_appid if set."""
        value = (self.sub_appid or self.sp_appid) if self.partner else self.appid
        assert value is not None
        return value
