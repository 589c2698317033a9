"""`python -m sandboxes.unionpay`: serve on 127.0.0.1:$JUHE_SANDBOX_UNIONPAY_PORT (default 8102)."""

from sandboxes.common.runner import serve
from sandboxes.unionpay.app import create_app
from sandboxes.unionpay.settings import UnionPaySettings

if __name__ == "__main__":
    serve(create_app(UnionPaySettings.from_env()), port_env="JUHE_SANDBOX_UNIONPAY_PORT", default_port=8102)
