"""Check a downloaded package against its own manifest: `python -m dataport.packaging.verify
export.zip`. Streams every member (no member is held in memory whole)."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from dataport.packaging.manifest import MANIFEST_NAME, Manifest

_CHUNK = 1024 * 1024


@dataclass
class Verification:
    manifest: Manifest
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_package(path: Path) -> Verification:
    with zipfile.ZipFile(path) as archive:
        manifest = Manifest.model_validate_json(archive.read(MANIFEST_NAME))
        result = Verification(manifest)
        listed = {f.path for f in manifest.files}
        present = {name for name in archive.namelist() if name != MANIFEST_NAME}
        result.problems += [f"{p}: in the manifest but not in the zip" for p in listed - present]
        result.problems += [f"{p}: in the zip but not in the manifest" for p in present - listed]
        for entry in manifest.files:
            if entry.path not in present:
                continue
            digest, size = hashlib.sha256(), 0
            with archive.open(entry.path) as member:  # also checks the member's CRC-32
                while chunk := member.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            if size != entry.bytes:
                result.problems.append(f"{entry.path}: {size} bytes, manifest says {entry.bytes}")
            if digest.hexdigest() != entry.sha256:
                result.problems.append(f"{entry.path}: SHA-256 does not match the manifest")
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m dataport.packaging.verify PACKAGE.zip", file=sys.stderr)
        return 2
    result = verify_package(Path(argv[0]))
    for problem in result.problems:
        print(problem, file=sys.stderr)
    counts = result.manifest.counts
    print(f"{'OK' if result.ok else 'FAILED'}: {len(result.manifest.files)} files, "
          f"{counts.sessions} sessions, {counts.messages} messages")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
