"""WinZip AES-256 (AE-2) for zip members, as a streaming `Transform` (see staging.py).

A member's data becomes: salt (16) | password verifier (2) | AES-256-CTR ciphertext | HMAC-SHA1
of the ciphertext truncated to 10 bytes. Keys come from PBKDF2-HMAC-SHA1 (1000 iterations) of
the password and the member's own random salt, so no two members share a key stream. The
counter is WinZip's: a 128-bit little-endian block number starting at 1, which is not the
big-endian counter of the CTR mode libraries offer, so the key stream is made here from AES-ECB
over counter blocks. Every byte is encrypted as it passes: nothing is buffered but a few KiB
of key stream made ahead.

AE-2 (not AE-1) because it stores CRC 0: a CRC of the plaintext would tell something about it,
and the HMAC already authenticates the data. The zip records are in zipformat (`encrypted`).
"""

from __future__ import annotations

import os
import sys
from array import array

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pydantic import SecretStr

SALT_SIZE = 16  # AES-256 (strength 3)
KEY_SIZE = 32
VERIFIER_SIZE = 2
MAC_SIZE = 10
ITERATIONS = 1000
BLOCK = 16
#: key stream made at least this many blocks at a time (format writers write record by record)
_MIN_BLOCKS = 256
#: bytes each encrypted member adds to its compressed data
OVERHEAD = SALT_SIZE + VERIFIER_SIZE + MAC_SIZE


def derive_keys(password: SecretStr, salt: bytes) -> tuple[bytes, bytes, bytes]:
    """(AES key, HMAC key, password verifier). The password is taken as UTF-8, as 7-Zip and
    WinZip do for AES."""
    material = PBKDF2HMAC(algorithm=hashes.SHA1(), length=2 * KEY_SIZE + VERIFIER_SIZE,  # noqa: S303 (WinZip's KDF)
                          salt=salt, iterations=ITERATIONS).derive(
        password.get_secret_value().encode("utf-8"))
    return material[:KEY_SIZE], material[KEY_SIZE:2 * KEY_SIZE], material[2 * KEY_SIZE:]


class WinZipAes:
    """Encrypts one member. The first output carries the salt and verifier, `finish()` the
    authentication code; use a new instance per member (a fresh salt each time)."""

    def __init__(self, password: SecretStr, *, salt: bytes | None = None) -> None:
        salt = os.urandom(SALT_SIZE) if salt is None else salt
        if len(salt) != SALT_SIZE:
            raise ValueError(f"salt must be {SALT_SIZE} bytes")
        aes_key, mac_key, verifier = derive_keys(password, salt)
        # ECB here only turns counter blocks into key stream (CTR built by hand, see above).
        self._blocks = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()  # noqa: S305
        self._mac = hmac.HMAC(mac_key, hashes.SHA1())  # noqa: S303 (WinZip's MAC)
        self._header = salt + verifier
        self._counter = 1
        self._spare = b""  # key stream made ahead, not used yet

    def update(self, data: bytes) -> bytes:
        return self._take_header() + self._encrypt(data)

    def finish(self) -> bytes:
        return self._take_header() + self._mac.finalize()[:MAC_SIZE]

    def _take_header(self) -> bytes:
        header, self._header = self._header, b""
        return header

    def _encrypt(self, data: bytes) -> bytes:
        if not data:
            return b""
        stream = self._spare
        if len(data) > len(stream):
            stream += self._key_stream(max(_MIN_BLOCKS, -(-(len(data) - len(stream)) // BLOCK)))
        self._spare = stream[len(data):]
        size = len(data)
        cipher = (int.from_bytes(data, "little")
                  ^ int.from_bytes(stream[:size], "little")).to_bytes(size, "little")
        self._mac.update(cipher)
        return cipher

    def _key_stream(self, blocks: int) -> bytes:
        """AES of the next `blocks` counter values (16-byte little-endian integers)."""
        counters = array("Q", bytes(BLOCK * blocks))  # (low, high) 64-bit halves
        counters[0::2] = array("Q", range(self._counter, self._counter + blocks))
        if sys.byteorder == "big":
            counters.byteswap()
        self._counter += blocks
        return self._blocks.update(counters.tobytes())
