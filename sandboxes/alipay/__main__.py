"""`python -m sandboxes.alipay`: serve on 127.0.0.1:$JUHE_SANDBOX_ALIPAY_PORT (default 8101)."""

from sandboxes.alipay.app import create_app
from sandboxes.alipay.settings import SandboxSettings
from sandboxes.common.runner import serve

if __name__ == "__main__":
    serve(create_app(SandboxSettings.from_env()), port_env="JUHE_SANDBOX_ALIPAY_PORT", default_port=8101)
