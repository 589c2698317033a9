"""The migration worker: it consumes nothing and publishes nothing yet (its outbox relay runs empty); runs are
driven by the API's background task or the CLI, both resumable from the run's checkpoint."""

from __future__ import annotations

from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask
from services.migration.config import Settings


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return []
