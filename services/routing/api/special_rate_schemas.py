"""Request and response schemas of the special-rate API (profiles, programmes, applications, savings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.common.paging import ListPage
from services.routing.domain.special_rates import (
    DOCUMENT_RE,
    DOCUMENTS_MAX,
    ENTITY_TYPES,
    REASON_LENGTH_MAX,
    Application,
    Eligibility,
    MerchantProjection,
    Programme,
)

EntityType = Literal["individual", "individual_business", "company", "public_institution", "nonprofit"]
assert set(EntityType.__args__) == set(ENTITY_TYPES)  # type: ignore[attr-defined]
ApplicationStatusName = Literal["draft", "submitted", "approved", "rejected"]
DocumentName = Field(pattern=DOCUMENT_RE.pattern, max_length=64)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MerchantProfilePutRequest(_Request):
    entity_type: EntityType
    industry_code: str = Field(pattern=r"^[0-9]{4}$", description="ISO 18245 merchant category code (MCC)")


class MerchantProfileResponse(BaseModel):
    merchant_id: str
    entity_type: str
    industry_code: str
    version: int


class ProgrammeResponse(BaseModel):
    programme_id: str
    channel: str
    method: str
    name: str
    name_zh: str
    eligible_entity_types: list[str]
    eligible_industry_codes: list[str] = Field(description="Empty: any industry")
    rate_bps: int
    cap_minor: int | None = Field(description="Per-payment fee cap in fen; null: none")
    available_from: datetime
    available_until: datetime | None
    term_days: int
    required_documents: list[str]
    renewal: dict[str, Any]
    example: bool = Field(description="An illustrative programme, to be checked against the channel's policy")

    @classmethod
    def of(cls, p: Programme) -> ProgrammeResponse:
        return cls.model_validate(p, from_attributes=True)


class CatalogueResponse(BaseModel):
    catalogue_version: str
    example: bool
    notice: str
    data: list[ProgrammeResponse]
    has_more: bool = False
    next_cursor: str | None = None


class EligibilityResponse(BaseModel):
    programme_id: str
    eligible: bool
    reasons: list[str]

    @classmethod
    def of(cls, e: Eligibility) -> EligibilityResponse:
        return cls(programme_id=e.programme.programme_id, eligible=e.eligible, reasons=list(e.reasons))


class EligibilityListResponse(BaseModel):
    merchant_id: str
    data: list[EligibilityResponse]
    has_more: bool = False
    next_cursor: str | None = None


class ApplicationCreateRequest(_Request):
    merchant_id: str = Field(min_length=1, max_length=64)
    programme_id: str = Field(min_length=1, max_length=48)
    documents: list[str] = Field(
        default_factory=list,
        max_length=DOCUMENTS_MAX,
        description="Names of the documents supplied (see the programme's list)",
    )


class ApplicationApproveRequest(_Request):
    effective_from: AwareDatetime | None = Field(
        default=None, description="When the rate comes into force; default now. It lasts the programme's term"
    )


class ApplicationRejectRequest(_Request):
    reason: str = Field(min_length=1, max_length=REASON_LENGTH_MAX)


class ApplicationResponse(BaseModel):
    application_id: str
    merchant_id: str
    programme_id: str
    status: ApplicationStatusName
    documents: list[str]
    effective_from: datetime | None
    effective_until: datetime | None
    rejection_reason: str | None
    rate_ids: list[str] = Field(description="The merchant fee rates an approval wrote (routing quotes them)")
    version: int

    @classmethod
    def of(cls, a: Application) -> ApplicationResponse:
        return cls.model_validate(a, from_attributes=True)


class ApplicationListResponse(ListPage[ApplicationResponse]):
    pass


class ProgrammeSavingsResponse(BaseModel):
    programme_id: str
    method: str
    payment_count: int
    volume_minor: int
    fees_minor: int
    projected_fees_minor: int
    savings_minor: int


class MerchantSavingsResponse(BaseModel):
    merchant_id: str
    payment_count: int
    volume_minor: int
    fees_minor: int
    best_savings_minor: int
    programmes: list[ProgrammeSavingsResponse]

    @classmethod
    def of(cls, m: MerchantProjection) -> MerchantSavingsResponse:
        return cls.model_validate(m, from_attributes=True)


class SavingsResponse(BaseModel):
    since: datetime
    until: datetime
    currency: str
    example_catalogue: bool = Field(description="The projection used the EXAMPLE catalogue's illustrative rates")
    payment_count: int
    volume_minor: int
    fees_minor: int
    best_savings_minor: int
    merchants: list[MerchantSavingsResponse]
    merchants_without_profile: list[str]
