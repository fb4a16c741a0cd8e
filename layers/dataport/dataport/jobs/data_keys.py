"""A restore's data key: what seals the objects it keeps for itself on S3 (imports.sealed).

KMS makes it (GenerateDataKey, AES-256) under the encryption context {"restoreId": <restore>},
on the password key (`PASSWORD_KEY_ARN`); only its ciphertext is stored (in the pins of the
objects it seals, and beside the restore's objects for a retried plan). Each task that opens
one of them asks KMS for the plaintext with the same context: a ciphertext copied onto another
restore does not open, and every use is a CloudTrail event naming the restore. The plaintext
lives in the invocation's memory only, never in a log, a job row or a task's state.
"""

from __future__ import annotations

import base64

from dataport import aws
from dataport.settings import get_settings


def new_data_key(restore_id: str) -> tuple[bytes, str]:
    """(the key, its KMS ciphertext in base64) for a restore's sealed objects."""
    made = aws.kms().generate_data_key(KeyId=_key(), KeySpec="AES_256",
                                       EncryptionContext=_context(restore_id))
    return made["Plaintext"], base64.b64encode(made["CiphertextBlob"]).decode()


def open_data_key(sealed: str, restore_id: str) -> bytes:
    """The key whose ciphertext `new_data_key` gave for this restore."""
    plain: bytes = aws.kms().decrypt(KeyId=_key(), CiphertextBlob=base64.b64decode(sealed),
                                     EncryptionContext=_context(restore_id))["Plaintext"]
    return plain


def _context(restore_id: str) -> dict[str, str]:
    return {"restoreId": restore_id}


def _key() -> str:
    return get_settings().password_key_arn
