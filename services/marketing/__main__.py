"""`python -m services.marketing`: run the marketing service (API and/or worker, by JUHE_MARKETING_ROLE)."""

from libs.common.runner import serve
from services.marketing.app import create_app
from services.marketing.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
