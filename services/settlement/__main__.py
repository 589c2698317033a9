"""`python -m services.settlement`: run the settlement service (API and/or worker, by JUHE_SETTLEMENT_ROLE)."""

from libs.common.runner import serve
from services.settlement.app import create_app
from services.settlement.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
