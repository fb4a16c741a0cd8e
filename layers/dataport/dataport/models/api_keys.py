"""API keys as the /api-keys routes show them: the key itself only once, when it is made."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from dataport.models.common import ApiModel


class ApiKeyCreate(ApiModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"\S",
                      description="what the key is for, to tell keys apart (\"nightly backup\")")
    expires_in_days: int | None = Field(default=None, ge=1, le=365,
                                        description="the key stops working after this many days; "
                                                    "without it, when it is revoked")
    role: Literal["user", "admin"] = Field(
        default="user", description="`admin` makes a key that acts as an administrator "
                                    "(instance backups and restores); only an administrator "
                                    "may make one")


class ApiKeyView(ApiModel):
    key_id: str = Field(description="names the key in this API; not a credential")
    name: str
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    revoked: bool = False
    revoked_at: AwareDatetime | None = None
    role: Literal["user", "admin"] = "user"


class ApiKeyCreated(ApiKeyView):
    key: str = Field(description="the credential (`Authorization: ApiKey <key>`, or `?token=` on "
                                 "the WebSocket). Shown this once: only its hash is stored")


class ApiKeyList(ApiModel):
    api_keys: list[ApiKeyView]
