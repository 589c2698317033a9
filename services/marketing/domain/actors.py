"""Who is asking, as far as marketing cares: an operator (platform), a merchant, a user or a service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["operator", "merchant", "user", "service"]


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    merchant_id: str | None = None
    user_id: str | None = None

    @property
    def owner_scope(self) -> str | None:
        """The merchant whose stocks and campaigns this actor may see and change; None: all (operators).
        An operator acting for a merchant (`Juhe-On-Behalf-Of`) keeps operator powers over every stock."""
        return self.merchant_id if self.kind == "merchant" else None
