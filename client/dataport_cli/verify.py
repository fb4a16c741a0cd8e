"""Offline verification of a downloaded package against its own manifest.json: every file the
manifest lists is in the zip with its size and SHA-256, and nothing else is. Members are
streamed (never read whole); an encrypted package (WinZip AES) is read with pyzipper, which
also checks each member's HMAC. The same checks as the service's own
`python -m dataport.packaging.verify`, without the service's dependencies."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyzipper

MANIFEST_NAME = "manifest.json"
_CHUNK = 1024 * 1024


class PasswordRequired(ValueError):
    """The package is encrypted and no password, or a wrong one, was given."""


@dataclass
class Verification:
    manifest: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def files(self) -> list[dict[str, Any]]:
        listed = self.manifest.get("files")
        return listed if isinstance(listed, list) else []

    def summary(self) -> dict[str, Any]:
        counts = self.manifest.get("counts") or {}
        return {"ok": self.ok, "problems": self.problems, "format": self.manifest.get("format"),
                "files": len(self.files), "counts": counts}


def verify_package(path: Path, password: str | None = None) -> Verification:
    try:
        archive = pyzipper.AESZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        return Verification({}, [f"{path.name}: not a readable zip ({error})"])
    with archive:
        if password is not None:
            archive.setpassword(password.encode("utf-8"))
        result = Verification(_manifest(archive, password))
        listed = {str(f.get("path")) for f in result.files}
        present = {name for name in archive.namelist() if name != MANIFEST_NAME}
        result.problems += [f"{p}: in the manifest but not in the zip"
                            for p in sorted(listed - present)]
        result.problems += [f"{p}: in the zip but not in the manifest"
                            for p in sorted(present - listed)]
        for entry in result.files:
            name = str(entry.get("path"))
            if name not in present:
                continue
            digest, size = hashlib.sha256(), 0
            try:
                with archive.open(name) as member:  # checks the CRC-32, or the HMAC
                    while chunk := member.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
            except (zipfile.BadZipFile, RuntimeError, OSError) as error:
                result.problems.append(f"{name}: unreadable ({error})")
                continue
            if size != entry.get("bytes"):
                result.problems.append(f"{name}: {size} bytes, manifest says {entry.get('bytes')}")
            if digest.hexdigest() != entry.get("sha256"):
                result.problems.append(f"{name}: SHA-256 does not match the manifest")
    return result


def _manifest(archive: pyzipper.AESZipFile, password: str | None) -> dict[str, Any]:
    try:
        data = archive.read(MANIFEST_NAME)
    except KeyError:
        raise ValueError("no manifest.json: not a dataport package") from None
    except RuntimeError as error:  # pyzipper: "... requires a password" / "Bad password"
        if password is None:
            raise PasswordRequired("the package is encrypted: pass --password-prompt") from error
        raise PasswordRequired("the password does not open this package") from error
    manifest = json.loads(data)
    if not isinstance(manifest, dict):
        raise ValueError("manifest.json is not an object: not a dataport package")
    return manifest
