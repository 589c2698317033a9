from libs.common.migrations import run_env
from services.cashier.store.tables import metadata

run_env(metadata)
