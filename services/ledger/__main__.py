"""`python -m services.ledger`: run the ledger service (API and/or worker, by JUHE_LEDGER_ROLE)."""

from libs.common.runner import serve
from services.ledger.app import create_app
from services.ledger.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
