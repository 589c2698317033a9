"""Toolkit shared by every channel sandbox: faults, notification delivery, a persistent store, keys.

Sandboxes stand for the outside world, so nothing here imports from `libs/`, `services/` or
`gateway/`; see README.md for the control API every sandbox exposes through this package.
"""

from sandboxes.common.faults import FaultMiddleware, FaultSettings
from sandboxes.common.keys import KeyPair, generate_rsa_key_pair, load_or_create_rsa_key
from sandboxes.common.notify import DeliveryRecord, NotificationDispatcher, NotificationJob
from sandboxes.common.paths import sandbox_data_dir
from sandboxes.common.store import DocumentStore

__all__ = [
    "DeliveryRecord",
    "DocumentStore",
    "FaultMiddleware",
    "FaultSettings",
    "KeyPair",
    "NotificationDispatcher",
    "NotificationJob",
    "generate_rsa_key_pair",
    "load_or_create_rsa_key",
    "sandbox_data_dir",
]
