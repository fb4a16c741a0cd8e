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


class OwnerGone(Forbidden):
    """A scheduled run's owner no longer owns anything in ClaudeLens (no project): ClaudeLens
    keeps no user directory dataport can read, so that is how a departed owner shows."""

    code = "owner_not_found"


class Gone(DataportError):
    code = "gone"
    http_status = 410


class Conflict(DataportError):
    code = "conflict"
    http_status = 409


class IdTaken(Conflict):
    """An id an import needs in the user's account is held by data outside the session it
    writes (see source.identity): found by the comparison, or by the unique index when another
    write took it after the comparison."""

    code = "id_taken"

    @classmethod
    def of(cls, session_id: str, taken: str) -> IdTaken:
        return cls(f"Session {session_id} cannot be imported: the id {taken} it needs in your "
                   "account is already held by other data. Copy ids cannot be derived without "
                   "this deployment's secret, so someone reused an id of yours they saw; leave "
                   "the session out of the file and import the rest, or ask an administrator "
                   f"who holds {taken}.", details={"sessionId": session_id, "id": taken})

    @classmethod
    def at_write(cls, collection: str, taken: str | None) -> IdTaken:
        which = f"the id {taken}" if taken else "an id"
        return cls(f"Another write took {which} in {collection} after this import checked its "
                   "ids, so the session being written was put back as it was. Import the file "
                   "again: the new import sees the id and stores your copy under an id derived "
                   "from yours.", details={"collection": collection, "id": taken})


class WriteRejected(DataportError):
    """The database refused a document for a reason that retrying cannot change."""

    code = "write_rejected"
    http_status = 422


class DatabaseRefused(DataportError):
    """The database answered but refused the operation (permissions, limits, configuration)."""

    code = "database_refused"
    http_status = 503


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


class BackupHasDependents(Conflict):
    """A backup an unexpired increment depends on cannot be deleted or expire before it."""

    code = "backup_has_dependents"


class PreviewFailed(Conflict):
    """A preview job that failed (or was cancelled): its reason, and ask for a new one."""

    code = "preview_failed"


class BackupNotUsable(Conflict):
    """A backup that is not completed (pending, running, failed, corrupted, expired) cannot be
    downloaded, verified, followed by an increment or previewed."""

    code = "backup_not_usable"
