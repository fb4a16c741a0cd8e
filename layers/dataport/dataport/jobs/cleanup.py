"""Leave nothing behind: open multipart uploads aborted, staged objects (and a package) deleted.

Used by every path that ends a job early: the workflow's Catch, a cancel, a delete.
"""

from __future__ import annotations

from dataport import aws
from dataport.packaging import locations
from dataport.packaging.package import abort_uploads, delete_prefix
from dataport.settings import get_settings


def discard_job_objects(job_id: str, *, include_package: bool) -> None:
    s3, bucket = aws.s3(), get_settings().packages_bucket
    prefixes = [locations.staging_prefix(job_id)]
    if include_package:
        prefixes.append(locations.package_prefix(job_id))
    for prefix in prefixes:
        abort_uploads(s3, bucket, prefix)
        delete_prefix(s3, bucket, prefix)
