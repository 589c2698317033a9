"""`python -m web`: serve the pages (checkout, My Wallet, consoles) on JUHE_WEB_PORT (8006)."""

from libs.common.runner import serve
from web.app import create_app
from web.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
