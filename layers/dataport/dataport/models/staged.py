"""Staged files: each output file of an export worker, as the finalize step needs it
(dataport.packaging.staging writes them, the job store keeps their records)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from dataport.models.common import ApiModel


class Numbering(StrEnum):
    ALWAYS = "always"
    WHEN_SPLIT = "when_split"


class StagedFile(ApiModel):
    """One finished output file, as the finalize step needs it (JSON-safe for Step Functions
    and DynamoDB). `size`, `crc32` and `sha256` describe the uncompressed bytes;
    `compressed_size` is the length of the staged object, i.e. the member's data (with the
    AES salt, verifier and MAC when `encrypted`)."""

    path: str
    numbering: Numbering = Numbering.WHEN_SPLIT
    staging_key: str
    method: int = Field(description="zip compression method: 0 stored, 8 deflate")
    encrypted: bool = Field(default=False, description="WinZip AES-256 (AE-2)")
    crc32: int = Field(ge=0, le=0xFFFFFFFF)
    size: int = Field(ge=0)
    compressed_size: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    records: int = Field(default=0, ge=0)
    notes: list[str] = Field(default_factory=list)
