"""Juhe Python SDK: `Client` / `AsyncClient`, typed errors, webhook and checkout-return verification."""

from juhe_sdk.checkout import verify_checkout_return
from juhe_sdk.client import AsyncClient, Client, JuheResponse, __version__
from juhe_sdk.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    IdempotencyError,
    InvalidRequestError,
    JuheError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    WebhookSignatureError,
)
from juhe_sdk.webhooks import construct_event, sign_webhook, verify_signature

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "IdempotencyError",
    "InvalidRequestError",
    "JuheError",
    "JuheResponse",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "WebhookSignatureError",
    "__version__",
    "construct_event",
    "sign_webhook",
    "verify_checkout_return",
    "verify_signature",
]
