"""`python -m sandboxes.wechatpay`: serve on 127.0.0.1:$JUHE_SANDBOX_WECHATPAY_PORT (default 8100)."""

from sandboxes.common.runner import serve
from sandboxes.wechatpay.app import create_app
from sandboxes.wechatpay.settings import SandboxSettings

if __name__ == "__main__":
    serve(create_app(SandboxSettings.from_env()), port_env="JUHE_SANDBOX_WECHATPAY_PORT", default_port=8100)
