"""The marketing worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask
from services.marketing.config import Settings


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return []
