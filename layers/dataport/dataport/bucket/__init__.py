"""The packages bucket: the one holder of the S3 client and the bucket's name.

Logic names objects by key (packaging.locations and imports.storage decide the layout); every
S3 call, streaming through smart_open included, is made by `PackagesBucket`. `packages_bucket()`
builds it from settings.
"""

from dataport.bucket.s3 import (
    InvalidRange,
    ObjectMissing,
    ObjectWriter,
    PackagesBucket,
    packages_bucket,
)

__all__ = ["InvalidRange", "ObjectMissing", "ObjectWriter", "PackagesBucket", "packages_bucket"]
