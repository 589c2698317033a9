"""The gateway worker: which events it consumes and which loops it runs besides the outbox relay."""

from __future__ import annotations

from gateway.config import Settings
from libs.common.inbox import Subscription
from libs.common.web import BackgroundTask


def subscriptions(settings: Settings) -> list[Subscription]:
    return []


def background_tasks(settings: Settings) -> list[BackgroundTask]:
    return []
