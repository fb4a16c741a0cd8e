"""manifest.json: what a package holds, so a person can check it and dataport can import it.

The workflow knows the header (owner, filters, counts) before the package exists; the files and
compression figures are added while the package is assembled (`Manifest.build`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Self

from pydantic import AwareDatetime, ConfigDict, Field, field_validator

from dataport import GENERATOR
from dataport.models.common import ApiModel
from dataport.models.jobs import Counts  # the job's counts; `files` excludes manifest.json

PACKAGE_FORMAT_VERSION = "1.0"
MANIFEST_NAME = "manifest.json"


class _ManifestModel(ApiModel):
    # Fields a newer dataport adds must not stop an older one from importing its packages.
    model_config = ConfigDict(extra="ignore")


class Owner(_ManifestModel):
    user_id: str


class Compression(_ManifestModel):
    method: Literal["deflate", "stored"]
    level: int = Field(ge=0, le=9)
    uncompressed_bytes: int = Field(ge=0)
    compressed_bytes: int = Field(ge=0)
    ratio: Decimal | None = Field(
        default=None, description="compressed / uncompressed, 4 places; absent when empty. "
        "compressed_bytes are the members' data as stored, with the AES overhead (28 bytes a "
        "member) when the package is encrypted")


class ManifestFile(_ManifestModel):
    path: str
    bytes: int = Field(ge=0)
    compressed_bytes: int = Field(ge=0)
    records: int = Field(ge=0)
    sha256: str
    notes: list[str] | None = None

    @field_validator("notes")
    @classmethod
    def _omit_empty(cls, notes: list[str] | None) -> list[str] | None:
        return notes or None


class ManifestHeader(_ManifestModel):
    """The part of the manifest the workflow knows before assembly."""

    package_format_version: str = PACKAGE_FORMAT_VERSION
    generator: str = GENERATOR
    created_at: AwareDatetime
    owner: Owner
    job_id: str
    format: str
    filters: dict[str, Any] = Field(default_factory=dict)
    counts: Counts = Counts()
    encryption: Literal["winzip-aes-256"] | None = Field(
        default=None, description="every member (this manifest too) is WinZip AES-256 (AE-2)")
    price_source: str | None = Field(
        default=None, description="what priced the messages stored without a cost (their "
                                  "costComputedBy), e.g. `genai-prices 0.2.5`; absent when the "
                                  "export computed none")

    @field_validator("created_at")
    @classmethod
    def _utc(cls, moment: datetime) -> datetime:
        return moment.astimezone(UTC)


class Manifest(ManifestHeader):
    compression: Compression
    files: list[ManifestFile]

    @classmethod
    def build(cls, header: ManifestHeader, files: list[ManifestFile], *, level: int) -> Self:
        """The header completed with the files, their count and the compression totals."""
        uncompressed = sum(f.bytes for f in files)
        compressed = sum(f.compressed_bytes for f in files)
        ratio = (None if uncompressed == 0 else
                 (Decimal(compressed) / Decimal(uncompressed)).quantize(
                     Decimal("0.0001"), rounding=ROUND_HALF_UP))
        fields = dict(header)
        fields["counts"] = header.counts.model_copy(update={"files": len(files)})
        return cls(
            **fields,
            compression=Compression(
                method="stored" if level == 0 else "deflate", level=level,
                uncompressed_bytes=uncompressed, compressed_bytes=compressed, ratio=ratio),
            files=files,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()
