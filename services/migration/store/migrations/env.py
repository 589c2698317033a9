from libs.common.migrations import run_env
from services.migration.store.tables import metadata

run_env(metadata)
