"""`python -m gateway`: run the gateway service (API and/or worker, by JUHE_GATEWAY_ROLE)."""

from gateway.app import create_app
from gateway.config import Settings
from libs.common.runner import serve

if __name__ == "__main__":
    serve(create_app, Settings())
