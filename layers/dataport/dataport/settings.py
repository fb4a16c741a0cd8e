"""The one settings model: every name, limit and endpoint comes from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    jobs_table: str = "dataport-jobs"
    idempotency_table: str = "dataport-idempotency"
    api_keys_table: str = "dataport-api-keys"
    connections_table: str = "dataport-connections"
    packages_bucket: str = "dataport-packages"
    # The KMS key that seals export passwords between the API and the export tasks.
    password_key_arn: str = ""
    export_state_machine_arn: str = ""
    import_state_machine_arn: str = ""
    # https://<api>.execute-api.<region>.amazonaws.com/<stage> of the WebSocket API (template);
    # AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI overrides it (the local stack), see aws.py.
    websocket_callback_url: str = ""

    mongodb_uri: str = "mongodb://127.0.0.1:27017"
    mongodb_database: str = "claudelens"

    # Name of the SSM SecureString (or Secrets Manager secret) holding the JWT signing secret.
    jwt_secret_parameter: str = "/dataport/jwt-secret"  # noqa: S105 (a name, not a secret)
    jwt_secret_source: str = Field(default="ssm", pattern="^(ssm|secretsmanager)$")
    # The REST authorizer's result cache (template: AuthorizerCacheSeconds = ReauthorizeEvery):
    # the authorizer refuses credentials that expire sooner, so no cached answer outlives one.
    authorizer_cache_seconds: int = Field(default=0, ge=0, le=3600)
    # Secrets Manager secret (name or ARN) keying the ids of imported copies (imports.identity);
    # the template's CopyIdSecret. Only the import tasks that derive copies read it.
    copy_id_secret: str = ""

    export_rate_limit: int = 10
    rate_limit_window_seconds: int = 3600
    job_retention_days: int = 30
    package_retention_days: int = 7
    download_url_ttl_seconds: int = Field(default=900, le=900)

    # Worker paging: sessions per page and the time kept in reserve before a Lambda's deadline.
    page_size: int = 100
    message_batch_size: int = 500
    worker_reserve_ms: int = 60_000
    sessions_per_shard: int = 5000
    upload_part_size_mb: int = Field(default=8, ge=5, le=16)

    # Imports: uploads go straight to S3 through a presigned POST capped at max_upload_bytes and
    # valid for upload_url_ttl_seconds; writes go out in bulk_writes of at most
    # import_batch_ops operations (MongoDB's own batch limit is far higher: this bounds memory,
    # the pre-image object written before each batch and the work lost to a crash).
    import_rate_limit: int = 5
    max_upload_bytes: int = Field(default=500 * 1000 * 1000, gt=0)
    upload_url_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    import_batch_ops: int = Field(default=1000, ge=1, le=1000)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
