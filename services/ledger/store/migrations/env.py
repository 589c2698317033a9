from libs.common.migrations import run_env
from services.ledger.store.tables import metadata

run_env(metadata)
