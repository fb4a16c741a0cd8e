"""The export request: format, filters and package options, validated at the API boundary."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from bson import ObjectId
from pydantic import AfterValidator, AwareDatetime, Field, SecretStr, model_validator

from dataport.models.common import ApiModel, SecretLength
from dataport.models.documents import MESSAGE_TYPES


class ExportFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    MARKDOWN = "markdown"
    PDF = "pdf"


def _object_id(value: str) -> str:
    if not ObjectId.is_valid(value):
        raise ValueError("must be a 24-character hex ObjectId")
    return value


def _message_type(value: str) -> str:
    if value not in MESSAGE_TYPES:
        raise ValueError(f"must be one of {', '.join(MESSAGE_TYPES)}")
    return value


ObjectIdStr = Annotated[str, AfterValidator(_object_id)]
MessageType = Annotated[str, AfterValidator(_message_type)]


class DateRange(ApiModel):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start and self.end and self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class CostRange(ApiModel):
    min: Decimal | None = Field(default=None, ge=0)
    max: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        return self


class ExportFilters(ApiModel):
    """Which data goes into an export. Session-level: projectIds, sessionIds, costRange (the
    session's totalCost) and dateRange (sessions active in the range). Message-level: dateRange
    (message timestamp), models, messageTypes, includeSidechains. A session whose messages are
    all filtered out is left out."""

    date_range: DateRange | None = None
    project_ids: list[ObjectIdStr] | None = Field(default=None, max_length=1000)
    session_ids: list[str] | None = Field(default=None, max_length=1000)
    models: list[str] | None = Field(default=None, max_length=100)
    message_types: list[MessageType] | None = Field(default=None, max_length=4)
    cost_range: CostRange | None = None
    include_sidechains: bool = True

    @property
    def filters_messages(self) -> bool:
        """True when a session may lose messages (and so may end up empty) under these filters."""
        return bool(self.date_range or self.models or self.message_types
                    or not self.include_sidechains)


class CompressionOptions(ApiModel):
    level: int = Field(default=6, ge=0, le=9, description="zip deflate level; 0 stores")


class EncryptionOptions(ApiModel):
    """The package becomes a WinZip AES-256 zip (7-Zip and WinZip open it with the password).
    The password is never stored: see docs/exports.md."""

    password: Annotated[SecretStr, SecretLength(8, 256)]


class ExportOptions(ApiModel):
    split_size_mb: int = Field(default=100, ge=1, le=500)
    compression: CompressionOptions = CompressionOptions()
    encryption: EncryptionOptions | None = None
    compute_costs: bool = Field(
        default=True,
        description="an assistant message stored without a cost gets one computed from its "
                    "model and usage (genai-prices, named in the manifest's priceSource) and is "
                    "marked costComputedBy; false exports stored costs only")


class ExportRequest(ApiModel):
    format: ExportFormat = ExportFormat.JSON
    filters: ExportFilters = ExportFilters()
    options: ExportOptions = ExportOptions()

    @property
    def password(self) -> SecretStr | None:
        return self.options.encryption.password if self.options.encryption else None

    def stored(self) -> dict[str, Any]:
        """What the job row keeps (and the API shows, and idempotency fingerprints): the
        request without the password, which travels sealed (jobs.passwords)."""
        return self.model_dump(mode="json", by_alias=True,
                               exclude={"options": {"encryption"}})

