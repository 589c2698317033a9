"""API versions: dated names, the one a request uses, and what each changed (the changelog).

A request may name its version in the `Juhe-Version` header; without it, the merchant's pinned version
applies (set by the platform: `PUT /v1/platform/merchants/{id}/api-version`), else the latest. Every
proxied answer says which version it used in the same header, so a merchant's logs show it. An unknown
version is refused (400 `api_version_unknown`, with the known ones) rather than silently served as another:
a client that asks for a version expects its shapes.

A new version is added here, newest last, with what changed; the services then keep the older shapes for
requests that name an older version. There is one version so far: the API of the conventions in
docs/api-conventions.md. What came before it was unversioned and is not served (see `UNVERSIONED_CHANGES`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.domain.errors import API_VERSION_UNKNOWN
from libs.common.errors import Problem

API_VERSION_HEADER = "Juhe-Version"


@dataclass(frozen=True, slots=True)
class ApiVersion:
    name: str  # the release date, YYYY-MM-DD
    changes: tuple[str, ...]


API_VERSIONS: tuple[ApiVersion, ...] = (
    ApiVersion(
        "2026-12-06",
        (
            "Every list answers {data, has_more, next_cursor}; routing's lists page with cursor= (not after=).",
            "A malformed cursor or a filter value outside its enum is 422 validation_failed; an unknown query "
            "parameter on a list is 422 unknown_parameter.",
            "GET /v1/payments?merchant_order_no= answers an empty list when there is no such order (not 404); "
            "listed payments carry their attempts.",
            "payer_action has one shape per type ({type, <field>, channel_data}); WeChat Pay's code_url is qr_code.",
            "metadata: at most 50 keys of 1..40 characters, string values of at most 500 (422 metadata_invalid).",
            "401 signature_invalid carries string_to_sign.",
        ),
    ),
)
KNOWN_VERSIONS: frozenset[str] = frozenset(v.name for v in API_VERSIONS)
LATEST_VERSION = API_VERSIONS[-1].name


def resolve(requested: str | None, pinned: str | None) -> str:
    """The version a request uses: the one it names, else the merchant's pinned one, else the latest."""
    if requested is None or requested.strip() == "":
        return pinned if pinned in KNOWN_VERSIONS else LATEST_VERSION
    name = requested.strip()
    if name not in KNOWN_VERSIONS:
        raise Problem(
            API_VERSION_UNKNOWN,
            f"unknown {API_VERSION_HEADER} {name[:40]!r}; known: {', '.join(sorted(KNOWN_VERSIONS))}",
            known_versions=sorted(KNOWN_VERSIONS),
        )
    return name


def known(name: str) -> str:
    """`name` if it is a known version (for pinning a merchant), else the same 400 as a request's header."""
    return resolve(name, None)
