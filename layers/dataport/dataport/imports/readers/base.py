"""What every import source is: a format, a version, and one streaming pass of records.

The order of records is the same for every source, so the import flow can act on a session as
soon as its record arrives without holding the upload:

- a PROJECT record comes before the sessions that belong to it, and every SESSION belongs to the
  PROJECT record most recently yielded before it (a project is yielded again when the stream
  returns to it; sources with ObjectIds also carry `projectId` == that project's `_id`);
- a SESSION record comes before its messages; a MESSAGE names its session by `sessionId`;
- a session can be yielded more than once (a dataport JSON package repeats a session in every
  file it continues into, with the same fields): records for a `sessionId` seen before continue
  that session, they do not replace it.

Problems a reader can read past (a line that is not JSON, a row with too few cells) go to the
`on_issue` callback given to `records()`, and the reader goes on with the next record; without a
callback the first error raises `BadInput` (the write pass must never skip data silently). A
problem that ends the reading (a truncated JSON document, a zip bomb) is reported the same way
and ends the pass.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from dataport.imports.limits import BadInput, ImportLimits
from dataport.imports.zipsafe import SafeZip
from dataport.models.imports import ImportOptions, Issue, SourceFormat
from dataport.models.records import ImportRecord

#: a fresh seekable binary stream over the upload on every call (one per pass)
Opener = Callable[[], IO[bytes]]
IssueCallback = Callable[[Issue], None]


class Reporter:
    """Where a reader puts what it read past: errors (strict: raised) and warnings."""

    def __init__(self, on_issue: IssueCallback | None, *, quiet: bool = False) -> None:
        self._on_issue = on_issue
        self._quiet = quiet
        #: record types tolerated but not imported (summary lines are used, not counted)
        self.skipped: Counter[str] = Counter()
        #: records of those types imported all the same, by type (a transcript's progress
        #: lines a message names as its parent, kept for the thread)
        self.kept: Counter[str] = Counter()

    @classmethod
    def quiet(cls) -> Reporter:
        """For a pre-pass over what the real pass will report: problems are dropped there."""
        return cls(None, quiet=True)

    def error(self, problem: Issue) -> None:
        if self._quiet:
            return
        if self._on_issue is None:
            raise BadInput(problem)
        self._on_issue(problem)

    def warning(self, problem: Issue) -> None:
        if self._on_issue is not None and not self._quiet:
            self._on_issue(problem)


class ImportSource(abc.ABC):
    """One upload, detected (see detect.open_import). `records()` may be called again for
    another pass: it opens a fresh stream each time."""

    format: SourceFormat
    #: whether the reader keeps each session's records together (a session continued in the
    #: next file follows on directly): the import then streams sessions (source.staging)
    session_grouped = True

    def __init__(self, opener: Opener, filename: str, *, options: ImportOptions,
                 limits: ImportLimits, zipped: bool, version: str | None = None,
                 password: bytes | None = None) -> None:
        self.opener = opener
        self.filename = filename
        self.options = options
        self.limits = limits
        self.zipped = zipped
        self.version = version
        self.password = password  # an encrypted zip's
        #: tolerated, not imported, by record type, for the last pass
        self.skipped: Counter[str] = Counter()
        #: of those types, imported all the same (Reporter.kept), for the last pass
        self.kept: Counter[str] = Counter()

    @property
    def read_again_cheaply(self) -> bool:
        """Whether reading this upload again costs about what writing and decoding the records
        validation checked would (imports.checked): validation then keeps none, and the
        execution, whose parse runs beside the database's writes, reads the upload again."""
        return False

    def records(self, on_issue: IssueCallback | None = None) -> Iterator[ImportRecord]:
        reporter = Reporter(on_issue)
        self.skipped = reporter.skipped
        self.kept = reporter.kept
        try:
            yield from self._records(reporter)
        except BadInput as exc:
            if on_issue is None:
                raise
            on_issue(exc.issue)

    @abc.abstractmethod
    def _records(self, reporter: Reporter) -> Iterator[ImportRecord]: ...

    @contextmanager
    def stream(self) -> Iterator[IO[bytes]]:
        stream = self.opener()
        try:
            stream.seek(0)
            yield stream
        finally:
            stream.close()

    @contextmanager
    def archive(self) -> Iterator[SafeZip]:
        with self.stream() as stream, SafeZip(stream, file=self.filename, limits=self.limits,
                                              password=self.password) as archive:
            yield archive
