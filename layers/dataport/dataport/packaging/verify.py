"""Check a downloaded package against its own manifest: `python -m dataport.packaging.verify
export.zip [--password PASSWORD]`. Streams every member (no member is held in memory whole);
an encrypted package (WinZip AES) is read with pyzipper, which checks each member's HMAC."""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyzipper

from dataport.packaging.manifest import MANIFEST_NAME, Manifest

_CHUNK = 1024 * 1024


class PasswordRequired(ValueError):
    """The package is encrypted and no password, or a wrong one, was given."""


@dataclass
class Verification:
    manifest: Manifest
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_package(path: Path, password: str | None = None) -> Verification:
    with pyzipper.AESZipFile(path) as archive:
        if password is not None:
            archive.setpassword(password.encode("utf-8"))
        result = Verification(_manifest(archive, password))
        listed = {f.path for f in result.manifest.files}
        present = {name for name in archive.namelist() if name != MANIFEST_NAME}
        result.problems += [f"{p}: in the manifest but not in the zip" for p in listed - present]
        result.problems += [f"{p}: in the zip but not in the manifest" for p in present - listed]
        for entry in result.manifest.files:
            if entry.path not in present:
                continue
            digest, size = hashlib.sha256(), 0
            # Checks the member's CRC-32, or its HMAC when it is encrypted.
            with archive.open(entry.path) as member:
                while chunk := member.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            if size != entry.bytes:
                result.problems.append(f"{entry.path}: {size} bytes, manifest says {entry.bytes}")
            if digest.hexdigest() != entry.sha256:
                result.problems.append(f"{entry.path}: SHA-256 does not match the manifest")
    return result


def _manifest(archive: pyzipper.AESZipFile, password: str | None) -> Manifest:
    """The manifest, or PasswordRequired when it is encrypted and cannot be opened."""
    try:
        return Manifest.model_validate_json(archive.read(MANIFEST_NAME))
    except RuntimeError as error:  # pyzipper: "... requires a password" / "Bad password"
        if password is None:
            raise PasswordRequired("the package is encrypted: pass --password") from error
        raise PasswordRequired("the password does not open this package") from error


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataport.packaging.verify",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--password", help="of an encrypted package (options.encryption)")
    args = parser.parse_args(argv)
    try:
        result = verify_package(args.package, args.password)
    except PasswordRequired as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    for problem in result.problems:
        print(problem, file=sys.stderr)
    counts = result.manifest.counts
    print(f"{'OK' if result.ok else 'FAILED'}: {len(result.manifest.files)} files, "
          f"{counts.sessions} sessions, {counts.messages} messages")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
