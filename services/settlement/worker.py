"""The settlement worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask
from services.settlement.config import Settings
from services.settlement.events import ACCOUNT_OPENED, LEDGER_ACCOUNTS_TOPIC
from services.settlement.events.consumers import on_account_opened


def subscriptions(settings: Settings) -> list[Subscription]:
    return [Subscription(LEDGER_ACCOUNTS_TOPIC, on_account_opened, frozenset({ACCOUNT_OPENED}))]


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return []
