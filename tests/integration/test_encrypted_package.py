"""Encrypted packages on (moto) S3: workers stage AES members, the finalizer copies them and
encrypts the manifest; the password travels sealed by KMS for one job only."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pyzipper
from botocore.exceptions import ClientError
from pydantic import SecretStr

from dataport import aws
from dataport.bucket import PackagesBucket
from dataport.formats.base import Numbering
from dataport.jobs import passwords
from dataport.packaging.locations import package_key, shard_prefix
from dataport.packaging.manifest import MANIFEST_NAME, Manifest
from dataport.packaging.package import assemble_package
from dataport.packaging.staging import StagingSink
from dataport.packaging.verify import main as verify_main
from dataport.packaging.zipformat import FLAG_ENCRYPTED
from dataport.settings import get_settings
from tests.integration.test_packaging import (
    JOB,
    PART,
    MiB,
    assert_nothing_left,
    download,
    header,
    write_file,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PASSWORD = SecretStr("a long enough password")


def test_every_member_of_the_package_is_encrypted(s3_client: S3Client, packages_bucket: str,
                                                  bucket: PackagesBucket, tmp_path: Path) -> None:
    plan = StagingSink(bucket, shard_prefix(JOB, 0), password=PASSWORD,
                       part_size=PART)
    shard = StagingSink(bucket, shard_prefix(JOB, 1), level=9,
                        password=PASSWORD, part_size=PART)
    expected = {
        "projects-0001.json": write_file(plan, "projects.json", [b'[{"p": 1}]'],
                                         numbering=Numbering.ALWAYS),
        "big.bin": write_file(shard, "big.bin", [os.urandom(MiB) for _ in range(7)]),  # copied
        "notes.md": write_file(shard, "notes.md", ["# Été\n".encode() * 5000]),
    }
    assert all(f.encrypted for f in plan.complete() + shard.complete())
    key = package_key(JOB, "encrypted.zip")
    result = assemble_package(bucket, key, lambda: plan.complete() + shard.complete(),
                              header(encryption="winzip-aes-256"), part_size=PART, level=9,
                              password=PASSWORD)
    archive = download(s3_client, packages_bucket, key)
    with pyzipper.AESZipFile(io.BytesIO(archive)) as zf:
        assert all(info.flag_bits & FLAG_ENCRYPTED for info in zf.infolist())
        assert zf.namelist() == [*expected, MANIFEST_NAME]
        zf.setpassword(PASSWORD.get_secret_value().encode())
        assert {name: zf.read(name) for name in expected} == expected
        manifest = Manifest.model_validate_json(zf.read(MANIFEST_NAME))
    assert manifest == result.manifest
    assert manifest.encryption == "winzip-aes-256"

    path = tmp_path / "encrypted.zip"
    path.write_bytes(archive)
    assert subprocess.run(["7z", "t", f"-p{PASSWORD.get_secret_value()}", str(path)],
                          capture_output=True, check=False).returncode == 0
    assert verify_main([str(path), "--password", PASSWORD.get_secret_value()]) == 0
    assert verify_main([str(path)]) == 1
    assert verify_main([str(path), "--password", "not the password"]) == 1


def test_a_member_staged_without_the_password_is_refused(s3_client: S3Client, packages_bucket: str,
                                                         bucket: PackagesBucket) -> None:
    """A package is encrypted whole or not at all."""
    sink = StagingSink(bucket, shard_prefix(JOB, 1), part_size=PART)
    write_file(sink, "plain.json", [b"{}"])
    key = package_key(JOB, "mixed.zip")
    with pytest.raises(ValueError, match="without encryption"):
        assemble_package(bucket, key, sink.complete, header(),
                         part_size=PART, level=6, password=PASSWORD)
    assert_nothing_left(s3_client, packages_bucket, key)


@pytest.fixture
def password_key(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    arn = aws.kms().create_key(Description="test")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("PASSWORD_KEY_ARN", arn)
    get_settings.cache_clear()
    yield arn
    get_settings.cache_clear()


def test_a_sealed_password_opens_for_its_own_job_only(password_key: str) -> None:
    sealed = passwords.seal(PASSWORD, "job-a")
    assert PASSWORD.get_secret_value().encode() not in base64.b64decode(sealed)
    assert passwords.unseal(sealed, "job-a") == PASSWORD
    with pytest.raises(ClientError, match="InvalidCiphertext"):
        passwords.unseal(sealed, "job-b")
