from libs.common.migrations import run_env
from services.settlement.store.tables import metadata

run_env(metadata)
