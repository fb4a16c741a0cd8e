"""An export's password on its way from the API to the tasks that encrypt the package, and a
backup schedule's password kept for its runs.

The API seals it with KMS under the encryption context {"jobId": <job>} and the job row holds
only that ciphertext, until the job ends (JobStore._update forgets it). Each task that
writes members unseals it with the same context: a ciphertext copied onto another job's row
does not open, and every use is a CloudTrail event naming the job. Why KMS rather than a
secret per job: docs/exports.md.
"""

from __future__ import annotations

import base64

from pydantic import SecretStr

from dataport import aws
from dataport.settings import get_settings


def seal(password: SecretStr, job_id: str) -> str:
    """KMS ciphertext of the password, base64 (a string the job row can hold)."""
    return _seal(password, {"jobId": job_id})


def unseal(sealed: str, job_id: str) -> SecretStr:
    return _unseal(sealed, {"jobId": job_id})


def seal_for_schedule(password: SecretStr, schedule_id: str) -> str:
    """A backup schedule's password as its record keeps it: KMS ciphertext under the context
    {"scheduleId": <schedule>} (a ciphertext copied to another schedule does not open)."""
    return _seal(password, {"scheduleId": schedule_id})


def unseal_for_schedule(sealed: str, schedule_id: str) -> SecretStr:
    return _unseal(sealed, {"scheduleId": schedule_id})


def _seal(password: SecretStr, context: dict[str, str]) -> str:
    blob = aws.kms().encrypt(KeyId=_key(), Plaintext=password.get_secret_value().encode(),
                             EncryptionContext=context)["CiphertextBlob"]
    return base64.b64encode(blob).decode()


def _unseal(sealed: str, context: dict[str, str]) -> SecretStr:
    plain = aws.kms().decrypt(KeyId=_key(), CiphertextBlob=base64.b64decode(sealed),
                              EncryptionContext=context)["Plaintext"]
    return SecretStr(plain.decode())


def _key() -> str:
    return get_settings().password_key_arn
