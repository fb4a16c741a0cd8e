"""Import validation reports and conflict summaries (what GET /imports/{jobId} shows)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, SecretStr

from dataport.models.common import ApiModel, SecretLength
from dataport.models.job_common import JobError, JobStatus, Progress

#: how many errors / warnings a report lists (the totals count all of them)
MAX_LISTED_ISSUES = 100
#: how many renamed messages a session's result lists (its counts count all of them)
MAX_LISTED_COPIES = 100


class SourceFormat(StrEnum):
    DATAPORT_JSON = "dataport-json"  # a dataport json package (zip or a conversations-*.json)
    DATAPORT_JSONL = "dataport-jsonl"  # a dataport jsonl package (Claude-native transcripts)
    CLAUDE_TRANSCRIPT = "claude-transcript"  # one ~/.claude/projects/.../<id>.jsonl or a zip tree
    CSV = "csv"  # sessions.csv / messages.csv, ours or another tool's with a field mapping
    DATAPORT_BACKUP = "dataport-backup"  # a backup (docs/backups.md): what a restore reads


class IssueCode(StrEnum):
    """Every problem an import can report, so clients and tests can act on a code, not a text."""

    # the upload as a whole
    EMPTY_FILE = "empty_file"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_EXTENSION = "unsupported_extension"
    CONTENT_MISMATCH = "content_mismatch"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNSUPPORTED_VERSION = "unsupported_version"
    NO_RECORDS = "no_records"
    # zip archives
    INVALID_ZIP = "invalid_zip"
    ZIP_BOMB = "zip_bomb"
    ZIP_TOO_MANY_ENTRIES = "zip_too_many_entries"
    ZIP_UNSAFE_PATH = "zip_unsafe_path"
    ZIP_SYMLINK = "zip_symlink"
    ZIP_ENCRYPTED = "zip_encrypted"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (an issue code, not a password)
    ZIP_DUPLICATE_ENTRY = "zip_duplicate_entry"
    IGNORED_ENTRY = "ignored_entry"
    MANIFEST_INVALID = "manifest_invalid"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    # text and structure
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    TRUNCATED_JSON = "truncated_json"
    INVALID_RECORD = "invalid_record"
    INVALID_EXTENDED_JSON = "invalid_extended_json"
    LINE_TOO_LONG = "line_too_long"
    NESTING_TOO_DEEP = "nesting_too_deep"
    STRING_TOO_LONG = "string_too_long"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    DUPLICATE_KEY = "duplicate_key"  # one object names a key twice: which value is meant?
    INVALID_FIELD_NAME = "invalid_field_name"  # `$...` / dotted at the top, NUL anywhere
    # CSV
    MISSING_COLUMN = "missing_column"
    INVALID_FIELD_MAPPING = "invalid_field_mapping"
    # fields of a record
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_ID = "invalid_id"
    INVALID_DATE = "invalid_date"
    DATE_OUT_OF_RANGE = "date_out_of_range"  # before 1970 or more than a day ahead
    INVALID_NUMBER = "invalid_number"
    NEGATIVE_COST = "negative_cost"
    INVALID_MESSAGE_TYPE = "invalid_message_type"
    DUPLICATE_UUID = "duplicate_uuid"
    PARENT_CYCLE = "parent_cycle"  # following parentUuid comes back to the message
    ORPHAN_MESSAGE = "orphan_message"
    SESSION_PROJECT_CONFLICT = "session_project_conflict"
    CONTENT_HASH_MISMATCH = "content_hash_mismatch"
    PROJECT_PATH_GUESSED = "project_path_guessed"
    PRICE_UNKNOWN = "price_unknown"  # a reply without cost whose model has no known price
    SKIPPED_RECORDS = "skipped_records"
    INTERNAL_ERROR = "internal_error"


class ImportOptions(ApiModel):
    """What the user says about an upload beyond the file itself."""

    format: SourceFormat | None = Field(
        default=None, description="declared format; an upload that is something else is refused")
    field_mapping: dict[str, str] | None = Field(
        default=None,
        description="CSV from another tool: our column name (see formats/csv_format.py "
                    "SESSION_COLUMNS / MESSAGE_COLUMNS) -> the column in the file")
    project_path: str | None = Field(
        default=None,
        description="project for sessions the upload does not place in one (a messages-only "
                    "CSV, a transcript without cwd)")


class Issue(ApiModel):
    severity: Literal["error", "warning"]
    code: str = Field(description="machine-readable, e.g. invalid_json, duplicate_uuid")
    message: str = Field(description="what is wrong and what to do about it")
    file: str | None = None
    line: int | None = None
    path: str | None = None
    field: str | None = None


class DateRange(ApiModel):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class ImportCounts(ApiModel):
    projects: int = 0
    sessions: int = 0
    messages: int = 0
    unknown_records: int = Field(default=0, description="tolerated, not imported")


class ConflictSummary(ApiModel):
    new_sessions: int = 0
    changed_sessions: int = 0
    identical_sessions: int = 0
    copied_sessions: int = Field(
        default=0, description="sessions whose id another account holds in this database: "
        "imported as copies under ids derived from yours (counted as new, changed or identical "
        "too)")
    copied_messages: int = Field(
        default=0, description="messages stored under uuids derived from yours: all of a "
        "copied session's, and every one whose uuid is held outside its session (by another "
        "account, or another session of yours); GET .../actions?dryRun=true lists them")


class ValidationReport(ApiModel):
    format: SourceFormat | None = None
    version: str | None = None
    counts: ImportCounts = ImportCounts()
    date_range: DateRange = DateRange()
    errors: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)
    errors_total: int = 0
    warnings_total: int = 0
    conflicts: ConflictSummary | None = None
    size: int | None = Field(default=None, description="bytes of the upload validated")
    sha256: str | None = Field(
        default=None, description="SHA-256 (hex) of the upload validated, computed while "
        "validating: the bytes staged and imported are these")

    @property
    def ok(self) -> bool:
        return self.errors_total == 0


# ---------------------------------------------------------------------------- the import flow
# POST /imports -> upload -> validate -> decide (dry runs, execute) -> rollback; see
# dataport.workflows.imports for what each step does.


#: the error of an import whose clean-up could not finish: a rollback repairs it
CLEANUP_FAILED = "cleanup_failed"

#: dry runs one import may run: each adds one decision's events to the import execution's history
#: (its passes run in child executions), so a bound keeps it far below Step Functions' 25,000
#: (tests/workflows/test_limits.py); the execution itself is never refused
MAX_DRY_RUNS = 100
#: the error code of a dry run asked for beyond MAX_DRY_RUNS
DRY_RUN_LIMIT = "dry_run_limit"


class Strategy(StrEnum):
    """What happens to an incoming session the user already has (new ones are always inserted).

    skip: the existing session is left untouched. replace: the existing session and its messages
    are replaced by the incoming ones. merge: union of messages by uuid; a message on both sides
    with a different contentHash takes the incoming version; session stats recomputed.
    rename: keep both: an incoming session that differs from the user's is written as a copy
    under a new, stable id (derived as copies' ids are, source.identity), its summary saying it
    is a restored copy; an identical one is left as it is."""

    SKIP = "skip"
    REPLACE = "replace"
    MERGE = "merge"
    RENAME = "rename"


class ImportCreate(ApiModel):
    """POST /imports: what is about to be uploaded."""

    filename: str = Field(min_length=1, max_length=255, pattern=r"^[^/\\\x00-\x1f]+$",
                          description="the file's name: its extension says what it is (.zip, "
                                      ".json, .jsonl, .csv)")
    size: int | None = Field(default=None, gt=0,
                             description="bytes, if known: a file over the limit is refused now "
                                         "rather than by S3 after the upload")
    options: ImportOptions = ImportOptions()
    password: Annotated[SecretStr, SecretLength(1, 256)] | None = Field(
        default=None,
        description="the password of an encrypted package (an export made with a password, or "
                    "a zip 7-Zip encrypted); never stored: it reaches the validation sealed "
                    "with KMS, as an export's does")

    def stored(self) -> dict[str, Any]:
        """What the job row keeps and the API shows: the request without the password."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude={"password"})


class UploadForm(ApiModel):
    """A presigned S3 POST: send `fields` and then the file as multipart/form-data to `url`."""

    url: str
    fields: dict[str, str]
    expires_at: AwareDatetime
    max_bytes: int


class ImportDecision(ApiModel):
    """POST /imports/{jobId}/execute."""

    strategy: Strategy = Strategy.SKIP
    per_session: dict[str, Strategy] = Field(
        default_factory=dict, max_length=2000,  # the decision is kept in the job row (400 KB)
        description="sessionId (as in the upload) -> strategy, overriding `strategy`")
    dry_run: bool = Field(default=False,
                          description="report exactly what would be done, writing nothing")
    field_mapping: dict[str, str] | None = Field(
        default=None, description="CSV only: a mapping other than the one validated; the upload "
                                  "is validated again with it before anything is written")

    def strategy_for(self, session_id: str) -> Strategy:
        return self.per_session.get(session_id, self.strategy)


class SessionAction(StrEnum):
    INSERT = "insert"  # a session the user did not have
    REPLACE = "replace"
    MERGE = "merge"
    SKIP = "skip"  # the user has it; strategy skip left it untouched
    UNCHANGED = "unchanged"  # the user has it and the strategy finds nothing to change
    REMOVE = "remove"  # a full restore: the target has it, the backup does not


class MessageCounts(ApiModel):
    inserted: int = 0
    updated: int = Field(default=0, description="present on both sides, incoming version written")
    deleted: int = Field(default=0, description="replace: existing messages the upload lacks")
    unchanged: int = 0
    skipped: int = Field(default=0, description="incoming messages not written")
    copied: int = Field(default=0, description="of the incoming messages, those stored under "
                        "a uuid derived from yours (another account or session holds theirs)")

    def plus(self, other: MessageCounts) -> MessageCounts:
        return MessageCounts(**{name: getattr(self, name) + getattr(other, name)
                                for name in MessageCounts.model_fields})


class SessionCounts(ApiModel):
    inserted: int = 0
    replaced: int = 0
    merged: int = 0
    skipped: int = 0
    unchanged: int = 0
    removed: int = Field(default=0, description="a full restore: sessions of the target the "
                                                "backup lacks, removed (pre-images journalled)")
    copies: int = Field(default=0, description="of those, written under ids derived from yours "
                                               "because another account holds the original ids")


class ImportOutcome(ApiModel):
    """What a dry run would do, or what the execution did (the same computation)."""

    dry_run: bool
    strategy: Strategy
    sessions: SessionCounts = SessionCounts()
    messages: MessageCounts = MessageCounts()
    projects_created: int = 0
    projects_removed: int = Field(default=0, description="a full restore: projects of the "
                                  "target the backup lacks, left empty, removed")
    started_at: AwareDatetime
    finished_at: AwareDatetime

    @property
    def wrote(self) -> bool:
        return not self.dry_run and (self.sessions.inserted + self.sessions.replaced
                                     + self.sessions.merged + self.sessions.removed
                                     + self.projects_removed) > 0


class CopiedMessage(ApiModel):
    uuid: str = Field(description="as in the upload")
    stored_uuid: str = Field(description="the uuid it has (or would have) in your account")


class SessionResult(ApiModel):
    """One session of an outcome (GET /imports/{jobId}/actions)."""

    session_id: str = Field(description="as in the upload")
    stored_session_id: str = Field(description="the id it has (or would have) in your account")
    action: SessionAction
    strategy: Strategy
    project_path: str | None = None
    messages: MessageCounts = MessageCounts()
    copy_: bool = Field(default=False, alias="copy",
                        description="another account holds the session's id: it is stored "
                        "under storedSessionId, and all its messages under derived uuids")
    copied_messages: list[CopiedMessage] = Field(
        default_factory=list, max_length=MAX_LISTED_COPIES,
        description="messages whose uuid is held outside the session (by another account, or "
        "another session of yours), with the uuid derived for them (the first "
        f"{MAX_LISTED_COPIES}; messages.copied counts all)")


class SideSummary(ApiModel):
    messages: int = 0
    cost: Decimal = Decimal(0)
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None


class MessageDiff(ApiModel):
    new: int = Field(default=0, description="only in the upload")
    changed: int = Field(default=0, description="on both sides with different contentHash")
    identical: int = 0
    only_existing: int = Field(default=0, description="only in your account")
    copied: int = Field(default=0, description="of the upload's, stored under uuids derived "
                        "from yours (another account or session holds theirs)")


class SessionConflict(ApiModel):
    """An incoming session you already have, and how the two differ."""

    session_id: str
    stored_session_id: str
    summary: str | None = None
    status: Literal["changed", "identical"]
    messages: MessageDiff
    existing: SideSummary
    incoming: SideSummary
    suggested_action: Strategy
    reason: str


class ConflictPage(ApiModel):
    conflicts: list[SessionConflict]
    next_token: str | None = None


class ActionPage(ApiModel):
    dry_run: bool
    actions: list[SessionResult]
    next_token: str | None = None


class ImportLinks(ApiModel):
    """Paths relative to the API's base URL."""

    self_: str = Field(alias="self")
    validate_: str = Field(alias="validate")
    conflicts: str
    execute: str
    actions: str
    rollback: str

    @classmethod
    def of(cls, job_id: str) -> ImportLinks:
        base = f"/imports/{job_id}"
        return cls(self_=base, validate_=f"{base}/validate", conflicts=f"{base}/conflicts",
                   execute=f"{base}/execute", actions=f"{base}/actions",
                   rollback=f"{base}/rollback")


class ImportCreated(ApiModel):
    job_id: str
    status: JobStatus
    upload: UploadForm
    links: ImportLinks


class ImportView(ApiModel):
    job_id: str
    status: JobStatus
    filename: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    options: dict[str, Any]
    progress: Progress
    report: ValidationReport | None = None
    decision: ImportDecision | None = None
    dry_run: ImportOutcome | None = None
    outcome: ImportOutcome | None = None
    error: JobError | None = None
    links: ImportLinks


class ImportList(ApiModel):
    imports: list[ImportView]
    next_token: str | None = None
