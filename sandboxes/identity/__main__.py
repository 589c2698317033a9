"""`python -m sandboxes.identity`: serve on 127.0.0.1:$JUHE_SANDBOX_IDENTITY_PORT (default 8105)."""

from sandboxes.common.runner import serve
from sandboxes.identity.app import create_app
from sandboxes.identity.settings import IdentitySettings

if __name__ == "__main__":
    serve(create_app(IdentitySettings.from_env()), port_env="JUHE_SANDBOX_IDENTITY_PORT", default_port=8105)
