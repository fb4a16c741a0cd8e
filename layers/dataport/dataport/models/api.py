"""REST response bodies (the OpenAPI document is generated from these)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field

from dataport.models.common import ApiModel
from dataport.models.jobs import Counts, Job, JobError, JobStatus, Progress


class ExportLinks(ApiModel):
    """Paths relative to the API's base URL."""

    self_: str = Field(alias="self")
    download: str


class PackageView(ApiModel):
    filename: str
    bytes: int
    files: int
    expires_at: AwareDatetime


class ExportView(ApiModel):
    job_id: str
    status: JobStatus
    format: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    request: dict[str, Any] = Field(description="as sent, without the password")
    encrypted: bool = Field(default=False, description="the package is WinZip AES-256 "
                            "encrypted with the request's password")
    progress: Progress
    counts: Counts | None = None
    package: PackageView | None = None
    error: JobError | None = None
    links: ExportLinks

    @classmethod
    def of(cls, job: Job) -> ExportView:
        state = job.export_state
        package = state.package
        return cls(
            job_id=job.job_id, status=job.status, format=state.request.format.value,
            created_at=job.created_at, updated_at=job.updated_at, finished_at=job.finished_at,
            request=state.request.stored(), encrypted=job.encrypted, progress=job.progress,
            counts=state.counts, error=job.error,
            package=PackageView(filename=package.filename, bytes=package.bytes,
                                files=package.files, expires_at=package.expires_at)
            if package else None,
            links=links_for(job.job_id),
        )


class ExportAccepted(ApiModel):
    job_id: str
    status: JobStatus
    links: ExportLinks

    @classmethod
    def of(cls, job: Job) -> ExportAccepted:
        return cls(job_id=job.job_id, status=job.status, links=links_for(job.job_id))


class EstimateCounts(ApiModel):
    projects: int
    sessions: int
    messages: int = Field(description="the sessions' messageCount sum: with message-level "
                          "filters, an upper bound")


class ExportEstimate(ApiModel):
    """What `POST /exports` with the same body would produce, from counts alone (no data read;
    the model: docs/exports.md, "Estimates")."""

    format: str
    counts: EstimateCounts
    package_bytes: int = Field(description="the zip for the requested format")
    package_bytes_by_format: dict[str, int] = Field(description="the same selection in every "
                                                    "format")
    duration_seconds: int


class ExportList(ApiModel):
    exports: list[ExportView]
    next_token: str | None = None


def links_for(job_id: str) -> ExportLinks:
    return ExportLinks(self_=f"/exports/{job_id}", download=f"/exports/{job_id}/download")


class ErrorDetail(ApiModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(ApiModel):
    """Every error answer: a machine-readable code and a message a person can act on."""

    error: ErrorDetail
