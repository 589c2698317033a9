"""`python -m services.migration`: run the migration service's API (runs, reports, finalise, reverse)."""

from libs.common.runner import serve
from services.migration.app import create_app
from services.migration.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
