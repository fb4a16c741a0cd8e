"""Download links: presigned GETs of a package, valid for minutes (settings), never days.

A presigned URL is a credential: it is handed to the package's owner (a 302, a WebSocket event)
and never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dataport.bucket import PackagesBucket
from dataport.jobs.store import utcnow
from dataport.models.jobs import PackageInfo
from dataport.settings import get_settings


@dataclass(frozen=True)
class Download:
    url: str
    expires_at: datetime


def presigned_download(bucket: PackagesBucket, package: PackageInfo) -> Download:
    """A fresh link to `package`, named as a zip download whatever the browser guesses."""
    settings = get_settings()
    issued = utcnow()
    url = bucket.presigned_get(package.key, ttl_seconds=settings.download_url_ttl_seconds,
                               filename=package.filename, content_type="application/zip")
    return Download(url=url,
                    expires_at=issued + timedelta(seconds=settings.download_url_ttl_seconds))
