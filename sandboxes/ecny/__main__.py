"""`python -m sandboxes.ecny`: serve on 127.0.0.1:$JUHE_SANDBOX_ECNY_PORT (default 8103)."""

from sandboxes.common.runner import serve
from sandboxes.ecny.app import create_app
from sandboxes.ecny.settings import EcnySettings

if __name__ == "__main__":
    serve(create_app(EcnySettings.from_env()), port_env="JUHE_SANDBOX_ECNY_PORT", default_port=8103)
