"""`python -m services.cashier`: run the cashier service (API and/or worker, by JUHE_CASHIER_ROLE)."""

from libs.common.runner import serve
from services.cashier.app import create_app
from services.cashier.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
