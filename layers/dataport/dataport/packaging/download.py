"""Download links: presigned GETs of a package, valid for minutes (settings), never days.

A presigned URL is a credential: it is handed to the package's owner (a 302, a WebSocket event)
and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dataport import aws
from dataport.models.jobs import PackageInfo
from dataport.settings import get_settings


@dataclass(frozen=True)
class Download:
    url: str
    expires_at: datetime


def presigned_download(package: PackageInfo) -> Download:
    """A fresh link to `package`, named as a zip download whatever the browser guesses."""
    settings = get_settings()
    issued = datetime.now(UTC)
    url: str = aws.s3().generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.packages_bucket, "Key": package.key,
                "ResponseContentDisposition": f'attachment; filename="{package.filename}"',
                "ResponseContentType": "application/zip"},
        ExpiresIn=settings.download_url_ttl_seconds,
    )
    return Download(url=url,
                    expires_at=issued + timedelta(seconds=settings.download_url_ttl_seconds))
