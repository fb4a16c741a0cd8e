"""Leave nothing behind: open multipart uploads aborted, staged objects (and a package) deleted.

Used by every path that ends a job early: the workflow's Catch, a cancel, a delete.
"""

from __future__ import annotations

from dataport.bucket import PackagesBucket
from dataport.packaging import locations


def discard_job_objects(bucket: PackagesBucket, job_id: str, *, include_package: bool) -> None:
    prefixes = [locations.staging_prefix(job_id)]
    if include_package:
        prefixes.append(locations.package_prefix(job_id))
    for prefix in prefixes:
        bucket.abort_uploads(prefix)
        bucket.delete_prefix(prefix)
