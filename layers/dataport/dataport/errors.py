"""Domain errors. The REST resolver maps them to HTTP answers in one place; workflow tasks
raise them under their class name, which the ASL's Retry and Catch match."""

from __future__ import annotations


class DataportError(Exception):
    """Base: `code` is machine-readable, the message is for a person."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class Unauthorized(DataportError):
    code = "unauthorized"
    http_status = 401


class Forbidden(DataportError):
    code = "forbidden"
    http_status = 403


class NotFound(DataportError):
    code = "not_found"
    http_status = 404


class Gone(DataportError):
    code = "gone"
    http_status = 410


class Conflict(DataportError):
    code = "conflict"
    http_status = 409


class InvalidRequest(DataportError):
    code = "invalid_request"
    http_status = 400


class NotSupported(DataportError):
    code = "not_supported"
    http_status = 400


class RateLimited(DataportError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, limit: int, remaining: int, reset_at: int,
                 retry_after: int) -> None:
        super().__init__(message, details={"limit": limit, "retryAfter": retry_after})
        self.limit = limit
        self.remaining = remaining
        self.reset_at = reset_at
        self.retry_after = retry_after


class TransientError(DataportError):
    """Worth retrying: the ASL retries tasks that raise this (throttling, a dropped socket)."""

    code = "transient"
    http_status = 503


class JobCancelled(DataportError):
    code = "cancelled"
    http_status = 409


class UploadChanged(Conflict):
    """The object an import validated is no longer the one read (its ETag changed, or it is
    gone): nothing of it may be staged or written."""

    code = "upload_changed"


class RecordRefused(InvalidRequest):
    """A record that fails validation's per-record checks where it was about to be written
    (staging checks again: what was validated must be what is written)."""

    code = "record_refused"
