from libs.common.migrations import run_env
from services.marketing.store.tables import metadata

run_env(metadata)
