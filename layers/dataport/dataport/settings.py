"""The settings models: every name, limit and endpoint comes from the environment.

Every table, bucket, ARN and secret name is required (template.yaml's Globals give them to
every function; tests and the local stack set them from the template too): no default may point
at a real resource. Each handler loads the settings at cold start, so a missing variable fails
there, once, with one message naming every missing variable. Only tunables have defaults.

MongoDB is apart (`MongoSettings`): only the functions that reach the database get its variables
(their own Environment in the template), and the URI itself never sits in an environment: the
variable names the Secrets Manager secret that holds it (source.mongo reads it at run time).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

#: a resource's name, ARN or URI: an empty value is as missing as an absent one
Resource = Annotated[str, Field(min_length=1)]


class MissingSettings(RuntimeError):
    """The environment lacks (or has unusable) variables; the message names every one."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    jobs_table: Resource
    idempotency_table: Resource
    api_keys_table: Resource
    connections_table: Resource
    schedules_table: Resource
    # The backup catalog (dataport.backups.catalog): records outlive job rows.
    backups_table: Resource
    packages_bucket: Resource
    # The KMS key that seals export passwords between the API and the export tasks.
    password_key_arn: Resource
    export_state_machine_arn: Resource
    import_state_machine_arn: Resource
    verify_state_machine_arn: Resource
    restore_state_machine_arn: Resource
    # https://<api>.execute-api.<region>.amazonaws.com/<stage> of the WebSocket API (template);
    # AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI overrides it (the local stack), see aws.py.
    websocket_callback_url: Resource

    # How S3 URLs name the bucket, presigned ones too: "virtual" (bucket.s3.<region>...) on
    # AWS; "path" where the endpoint is an IP address (the local stack on 127.0.0.1).
    s3_addressing_style: Literal["virtual", "path"] = "virtual"

    # Name of the SSM SecureString (or Secrets Manager secret) holding the JWT signing secret.
    jwt_secret_parameter: Resource
    jwt_secret_source: str = Field(default="ssm", pattern="^(ssm|secretsmanager)$")
    # Sign-in with the tokens ClaudeLens users already have (docs/deploy.md, "Sign-in"), set on
    # the authorizer only: the claim that carries the ClaudeLens user id, and optionally an OIDC
    # issuer whose RS256 tokens (keys from its JWKS, cached) are accepted for `oidc_audience`.
    user_id_claim: str = Field(default="sub", min_length=1)
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""  # empty: <issuer>/.well-known/jwks.json (Cognito's, Auth0's...)
    # Least seconds between two JWKS fetches an unknown `kid` may cause (a rotated key is found
    # at once; a flood of invented kids cannot make us hammer the issuer).
    oidc_jwks_refresh_seconds: int = Field(default=30, ge=0)
    # The REST authorizer's result cache (template: AuthorizerCacheSeconds = ReauthorizeEvery):
    # the authorizer refuses credentials that expire sooner, so no cached answer outlives one.
    authorizer_cache_seconds: int = Field(default=0, ge=0, le=3600)
    # Secrets Manager secret (name or ARN) keying the ids of imported copies (source.identity);
    # the template's CopyIdSecret. Only the import tasks that derive copies may read it.
    copy_id_secret: Resource

    # Web origins whose pages may read the REST answers (comma-separated; template:
    # AllowedOrigins, on the API function only). Empty: no CORS header at all.
    allowed_origins: str = ""

    export_rate_limit: int = 10
    rate_limit_window_seconds: int = 3600
    job_retention_days: int = 30
    # An export package stays downloadable from the history this long (the S3 lifecycle rule
    # on packages/ uses the same template parameter, PackageRetentionDays).
    package_retention_days: int = Field(default=30, ge=1)
    download_url_ttl_seconds: int = Field(default=900, le=900)

    # POST /backups/{id}/verify answers at once up to this stored size (the API function has
    # 30 s: a few hundred MB at S3 speeds, both passes); a larger backup is verified by a job.
    verify_sync_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # Worker paging: sessions per page and the time kept in reserve before a Lambda's deadline.
    page_size: int = 100
    message_batch_size: int = 500
    worker_reserve_ms: int = 60_000
    # Export shards sized by work (workflows/shards.py): a shard aims at shard_target_sessions
    # sessions' worth (a session weighs shard_messages_per_session messages, plus its own), at
    # most export_concurrency shards (the Distributed Map's MaxConcurrency) unless a shard would
    # then exceed shard_max_sessions sessions' worth.
    shard_target_sessions: int = Field(default=250, ge=1)
    shard_max_sessions: int = Field(default=20_000, ge=1)
    shard_messages_per_session: int = Field(default=100, ge=1)
    export_concurrency: int = Field(default=8, ge=1, le=10_000)
    upload_part_size_mb: int = Field(default=8, ge=5, le=16)

    # Imports: uploads go straight to S3 through a presigned POST capped at max_upload_bytes and
    # valid for upload_url_ttl_seconds; writes go out in bulk_writes of at most
    # import_batch_ops operations (MongoDB's own batch limit is far higher: this bounds memory,
    # the pre-image object written before each batch and the work lost to a crash).
    import_rate_limit: int = 5
    max_upload_bytes: int = Field(default=500 * 1000 * 1000, gt=0)
    upload_url_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    import_batch_ops: int = Field(default=1000, ge=1, le=1000)
    #: batches an execution has in flight at once (imports.executor._Writes): with two,
    #: MongoDB always has the next batch queued instead of waiting on this process between
    #: batches (docs/performance.md); memory grows by one batch per batch in flight
    import_writes_in_flight: int = Field(default=2, ge=1, le=4)

    # Restores (docs/backups.md): 5 per user per hour; a backup file from elsewhere comes in a
    # presigned multipart upload of at most max_restore_upload_bytes (S3: 10,000 parts of at
    # most 5 GiB), parts of restore_part_size_mb (grown when the file needs more parts).
    restore_rate_limit: int = 5
    #: instance restores (target: instance) per administrator per hour, counted on their own
    instance_restore_rate_limit: int = Field(default=2, ge=1)
    max_restore_upload_bytes: int = Field(default=100 * 1000**3, gt=0)
    restore_part_size_mb: int = Field(default=64, ge=5, le=5120)
    # A restore runs in shards of about this many messages (whole sessions) in parallel when
    # one user's backup holds more (an instance restore always runs a shard per user at least;
    # workflows.restore_shards, docs/backups.md "Restores in shards").
    restore_shard_messages: int = Field(default=200_000, ge=1)
    # ... and of at most about this many stored bytes: a backup of large messages (pasted
    # images, long tool outputs) runs in shards of fewer messages (`restore_shards.shard_size`),
    # so that no shard's Validate, one invocation, reads more than it can in its time budget
    # (about 0.5 GB stored in 780 s, docs/backups.md).
    restore_shard_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # An instance restore's small users share parts: a user whose last shard holds at most
    # this many messages goes into a pack with others, up to this many messages and
    # `restore_pack_users` users a pack; each shard reads its pack and takes only its user's
    # (0: a part per shard). One upload and pin per pack, not per user (docs/backups.md).
    restore_pack_messages: int = Field(default=2_000, ge=0)
    restore_pack_users: int = Field(default=100, ge=1)
    # ... and the shards of at most `restore_pack_messages` messages run this many to a Map
    # item (one child execution running them at once: workflows.restore_shards.groups), so a
    # restore of many small users runs this many times more of them at once than large ones.
    restore_group_shards: int = Field(default=5, ge=1, le=40)
    # What the plan of a restore in shards keeps of its invocation after the split: the
    # whole objects' SHA-256 (a chain's parents read again), the projects, one job per shard.
    # A split that reaches it stops, and the restore fails `backup_too_large`.
    restore_plan_reserve_ms: int = Field(default=120_000, ge=0)
    # The plan hands its split over to the next invocation at a `sessions/` member's end once
    # less than the reserve and this is left: what one more member may take (dataport cuts
    # members at 256 MiB of lines, about 40-50 s of split on these shared cores).
    restore_plan_member_ms: int = Field(default=180_000, ge=0)
    # Plan invocations one execution runs before it hands the rest of the restore over to a
    # child execution (as RemoveOn does): no size of backup reaches a history limit.
    restore_plan_invocations: int = Field(default=1_000, ge=1)

    # Backups (docs/backups.md): per user per hour, and for instance-wide backups (per
    # administrator per hour); how long a backup made by hand is kept; the default zstd level.
    backup_rate_limit: int = Field(default=10, ge=1)
    instance_backup_rate_limit: int = Field(default=2, ge=1)
    backup_retention_days: int = Field(default=30, ge=1, le=3650)
    backup_zstd_level: int = Field(default=3, ge=1, le=22)

    # Backup schedules (docs/backups.md, "Schedules and retention"): the due index spreads the
    # schedules over schedule_due_shards partitions (raise it, never lower it: rows move to
    # their new shard only when next written); runs are listed for schedule_run_retention_days.
    schedule_due_shards: int = Field(default=8, ge=1, le=256)
    schedule_run_retention_days: int = Field(default=90, ge=1)


class MongoSettings(BaseSettings):
    """What a function that reaches MongoDB needs besides `Settings` (template: set on those
    functions only, with the right to read the secret)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Secrets Manager secret (name or ARN) whose SecretString is the ClaudeLens MongoDB URI.
    mongodb_uri_secret: Resource
    mongodb_database: Resource


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        raise MissingSettings(_explain(error, "template.yaml sets them on every function")) \
            from None


@lru_cache(maxsize=1)
def get_mongo_settings() -> MongoSettings:
    try:
        return MongoSettings()
    except ValidationError as error:
        raise MissingSettings(_explain(
            error, "template.yaml sets them on the functions that reach MongoDB")) from None


def _explain(error: ValidationError, where: str) -> str:
    """One line naming every variable at fault (pydantic's own text names fields, one per
    paragraph, and never says they are environment variables)."""
    missing, invalid = [], []
    for problem in error.errors():
        name = str(problem["loc"][0]).upper() if problem["loc"] else "?"
        if problem["type"] == "missing" or (problem["type"] == "string_too_short"
                                            and not problem.get("input")):
            missing.append(name)
        else:
            invalid.append(f"{name} ({problem['msg']})")
    parts = []
    if missing:
        parts.append("missing environment variables: " + ", ".join(missing))
    if invalid:
        parts.append("invalid environment variables: " + ", ".join(invalid))
    return "dataport cannot start, " + "; ".join(parts) + f" ({where})"
