"""`python -m services.routing`: run the routing service (API and/or worker, by JUHE_ROUTING_ROLE)."""

from libs.common.runner import serve
from services.routing.app import create_app
from services.routing.config import Settings

if __name__ == "__main__":
    serve(create_app, Settings())
