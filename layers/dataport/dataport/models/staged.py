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
    `compressed_size` is the length of the member's data (with the AES salt, verifier and MAC
    when `encrypted`): bytes `offset` to `offset + compressed_size` of the staged object, which
    holds every file of one worker invocation, or, for a file written while another was open
    (csv's sessions and messages), its `segments` (offset, length) in that order."""

    path: str
    numbering: Numbering = Numbering.WHEN_SPLIT
    staging_key: str
    method: int = Field(description="zip compression method: 0 stored, 8 deflate")
    encrypted: bool = Field(default=False, description="WinZip AES-256 (AE-2)")
    crc32: int = Field(ge=0, le=0xFFFFFFFF)
    size: int = Field(ge=0)
    compressed_size: int = Field(ge=0)
    offset: int = Field(default=0, ge=0, description="where the member's data starts in the "
                                                     "staged object")
    segments: list[tuple[int, int]] | None = Field(
        default=None, description="(offset, length) pieces when the data is not contiguous")
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    records: int = Field(default=0, ge=0)
    notes: list[str] = Field(default_factory=list)
    content_size: int | None = Field(
        default=None, ge=0, description="a file whose bytes encode other content (a backup "
        "member's zstd frame): the size of that content (its lines)")
    content_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$",
                                       description="and its SHA-256")

    def byte_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of the member's data in the staged object, in order."""
        return list(self.segments) if self.segments else [(self.offset, self.compressed_size)]
