from gateway.store.tables import metadata
from libs.common.migrations import run_env

run_env(metadata)
