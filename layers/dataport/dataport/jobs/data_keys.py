"""A job's data key: what seals the objects a restore or an encrypted import keeps for itself
on S3 (imports.sealed).

KMS makes it (GenerateDataKey, AES-256) under the encryption context `{scope: <job>}`
(`{"restoreId": ...}` for a restore, `{"importId": ...}` for an import: models.DataKeyScope),
on the password key (`PASSWORD_KEY_ARN`); only its ciphertext is stored (in the pins of the
objects it seals, and beside a restore's objects for a retried plan). Each task that opens one
of them asks KMS for the plaintext with the same context: a ciphertext copied onto another job
does not open, and every use is a CloudTrail event naming the job. The plaintext lives in the
invocation's memory only, never in a log, a job row or a task's state.
"""

from __future__ import annotations

import base64

from dataport import aws
from dataport.models.job_common import DataKeyScope
from dataport.settings import get_settings


def new_data_key(scope: DataKeyScope, job_id: str) -> tuple[bytes, str]:
    """(the key, its KMS ciphertext in base64) for a job's sealed objects."""
    made = aws.kms().generate_data_key(KeyId=_key(), KeySpec="AES_256",
                                       EncryptionContext=_context(scope, job_id))
    return made["Plaintext"], base64.b64encode(made["CiphertextBlob"]).decode()


def open_data_key(sealed: str, scope: DataKeyScope, job_id: str) -> bytes:
    """The key whose ciphertext `new_data_key` gave for this job."""
    plain: bytes = aws.kms().decrypt(KeyId=_key(), CiphertextBlob=base64.b64decode(sealed),
                                     EncryptionContext=_context(scope, job_id))["Plaintext"]
    return plain


def _context(scope: DataKeyScope, job_id: str) -> dict[str, str]:
    return {scope.value: job_id}


def _key() -> str:
    return get_settings().password_key_arn
