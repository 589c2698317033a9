from gateway.flows.seed import (  # moved: gateway/flows/seed.py; kept for perf's, habits' and marketing's files
    DEMO_MERCHANT_ID,
    DEMO_USER_ID,
    seed_demo,
    seed_demo_async,
)

__all__ = ["DEMO_MERCHANT_ID", "DEMO_USER_ID", "seed_demo", "seed_demo_async"]
