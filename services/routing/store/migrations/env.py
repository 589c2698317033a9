from libs.common.migrations import run_env
from services.routing.store.tables import metadata

run_env(metadata)
