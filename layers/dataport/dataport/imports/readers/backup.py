"""dataport backups (docs/backups.md, the backup format) as an import source: what a restore
reads, through the import pipeline like any upload.

A backup is a zip of STORED members, each one zstd frame of canonical Extended JSON lines
(`projects/`, `sessions/`, `messages/<part>.jsonl.zst`; an increment adds `deletions.jsonl.zst`)
and `manifest.json` last, which lists every member with its line count, bytes, the SHA-256 of
its lines and of its stored bytes. A restore of an increment reads its chain (base, then each
increment): the source is given every link's opener, oldest first.

Checks. Every member listed is read to its end and checked against the manifest (stored bytes'
SHA-256 as the zip gives them, decompressed size and lines' SHA-256, line count), a member the
manifest does not list and one it lists that the zip lacks are errors: the validation pass reads
every member of every link, so a backup with one byte changed anywhere fails validation, before
anything is written (the pipeline writes only after a clean report). Decompression is streamed
(a chunk at a time, never a member whole) and stops at the size the manifest declares (a zstd
bomb is refused, not inflated).

Order (readers/base.py). Every record the import pipeline takes names its session and its
project before it: the projects of the chain are held (few: a user has tens, an instance
thousands), and each session is preceded by its project when that changes; all sessions come
first (then, unless a selection limits the restore, the projects no session named), then all
messages, so the source is not grouped by session (staged in full, as a CSV
is). Of the chain, the newest link holding a session wins, and a session (or project) deleted
by an increment is not taken from the links before it: the result is the source as it was at
the newest link's watermark. The sessions chosen are remembered by id (one set entry each) so
their messages are taken from the link that won.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, cast

import zstandard
from bson import ObjectId
from bson.errors import BSONError
from pydantic import ValidationError

from dataport.backups.format import (
    DELETIONS_MEMBER,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BackupManifest,
    FormatError,
    MemberEntry,
    loads_line,
)
from dataport.imports.limits import BadInput, ImportLimits, issue, iter_lines
from dataport.imports.readers.base import ImportSource, IssueCallback, Opener, Reporter
from dataport.imports.zipsafe import GuardedMember, SafeZip, ZipMember
from dataport.models.documents import MessageLayout
from dataport.models.imports import ImportOptions, IssueCode, SourceFormat
from dataport.models.records import ImportRecord, Location, RecordKind

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


def is_backup(archive: SafeZip) -> bool:
    """Whether a zip is a dataport backup: its manifest says so (read only when present)."""
    member = next((m for m in archive.members if m.name == MANIFEST_NAME), None)
    if member is None:
        return False
    try:
        head = json.loads(archive.read_small(member, MAX_MANIFEST_BYTES))
    except (ValueError, BadInput):
        return False
    return isinstance(head, dict) and head.get("format") == FORMAT


def read_manifest(archive: SafeZip, file: str) -> BackupManifest:
    member = next((m for m in archive.members if m.name == MANIFEST_NAME), None)
    if member is None:
        raise BadInput.of(IssueCode.MANIFEST_INVALID, f"{file} has no manifest.json: it is not "
                          "a dataport backup", file=file)
    try:
        manifest = BackupManifest.from_json(archive.read_small(member, MAX_MANIFEST_BYTES))
    except FormatError as exc:
        raise BadInput.of(IssueCode.UNSUPPORTED_VERSION, f"{file}: {exc}", file=MANIFEST_NAME,
                          field="formatVersion") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadInput.of(IssueCode.MANIFEST_INVALID, f"{file}: manifest.json is not a backup "
                          f"manifest: {where}: {first['msg']}", file=MANIFEST_NAME,
                          field=where or None) from None
    return manifest


@dataclass(frozen=True)
class Selection:
    """A selective restore's choice: sessions of these projects (path or id), these sessions.
    Empty: everything."""

    projects: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return not self.projects and not self.sessions

    def takes(self, session: Mapping[str, Any], project: Mapping[str, Any] | None) -> bool:
        if self.everything:
            return True
        if str(session.get("sessionId")) in self.sessions:
            return True
        return project is not None and (str(project.get("path")) in self.projects
                                        or str(project.get("_id")) in self.projects)


@dataclass(frozen=True)
class Cursor:
    """One link's place in a read that resumes: its `sessions/` member `sessions` from line
    `session_line`, its `messages/` member `messages` from line `line` (each member read again
    from its beginning, hashed whole, its lines before the place counted but not parsed)."""

    sessions: int = 0
    messages: int = 0
    line: int = 0
    session_line: int = 0


@dataclass(frozen=True)
class Position:
    """Where a read resumes (`records(start=...)`): a place per link (`links`, oldest first;
    one for a single backup), offered once a member is read and checked: at the end of each
    `sessions/` member (each link's other members where the walk stands: at most one
    `sessions/` and one `messages/` member a link are read twice per hand-over), and, `late`,
    at the end of each `messages/` member whose messages left their sessions' place (every
    session read: only those messages are left). `yielded` and `last_project` are the walk's
    (the projects it gave so far, the last one), so a resumed read gives the same records."""

    links: tuple[Cursor, ...]
    late: bool = False
    yielded: tuple[Any, ...] = ()
    last_project: Any = None

    def state(self) -> dict[str, Any]:
        """As Extended JSON-ready values (the plan stores it)."""
        return {"links": [[c.sessions, c.session_line, c.messages, c.line] for c in self.links],
                "late": self.late, "yielded": list(self.yielded),
                "lastProject": self.last_project}

    @classmethod
    def of(cls, state: Mapping[str, Any]) -> Position:
        return cls(tuple(Cursor(sessions=s, session_line=sl, messages=m, line=line)
                         for s, sl, m, line in state["links"]), bool(state["late"]),
                   tuple(state["yielded"]), state["lastProject"])


class NotInOrder(Exception):
    """A chain read in order (`in_order`) found a link whose sessions are not in sessionId
    order (dataport writes them in order): read it newest link first instead."""


@dataclass
class _Link:
    """One backup of the chain, opened."""

    number: int  # 0: the base
    opener: Opener
    name: str
    manifest: BackupManifest | None = None
    deleted_sessions: set[str] = field(default_factory=set)
    deleted_projects: set[ObjectId] = field(default_factory=set)


class BackupSource(ImportSource):
    """A backup chain (oldest first; a full backup is a chain of one) as import records."""

    format = SourceFormat.DATAPORT_BACKUP

    def __init__(self, opener: Opener, filename: str, *, options: ImportOptions,
                 limits: ImportLimits, password: bytes | None = None,
                 chain: Sequence[Opener] = (), selection: Selection = Selection(),
                 version: str | None = None, zipped: bool = True,
                 owner: ObjectId | None = None, in_order: bool = False,
                 sessions_only: bool = False) -> None:
        super().__init__(opener, filename, options=options, limits=limits, zipped=zipped,
                         version=version or str(FORMAT_VERSION), password=password)
        #: the links before the restored backup (its parents), oldest first
        self.chain = list(chain)
        self.selection = selection
        #: a chain read as one merged walk in sessionId order, each session with its
        #: messages (the split of a restore in shards, which hands over from one invocation
        #: to the next); its links' sessions must be in sessionId order, as dataport writes
        #: them (`NotInOrder` otherwise)
        self.in_order = in_order or not self.chain
        #: one backup streams each session with its messages (the import stages it light and
        #: writes its messages once); a chain gives all sessions, then all messages (staged
        #: in full: the newest link of each session is known only once all are read)
        self.session_grouped = not self.chain
        #: the projects and sessions the read takes, without their messages (a preview of
        #: what a restore restores: no `messages/` member is read)
        self.sessions_only = sessions_only
        #: an instance restore's shard: only what this user owns (projects whose user_id it
        #: is, their sessions and messages); a session of no project the backup holds has no
        #: owner and is left out
        self.owner = owner
        #: messages came out of their sessions' place (after every session)
        self.out_of_place = False
        #: the message layout the restored backup's source used (its manifest's, once read by
        #: a read of the records or `owners`; None before, or for a backup that records none)
        self.message_layout: MessageLayout | None = None
        #: the sessions this read took, with the link each one's version comes from
        self.chosen: dict[str, int] = {}
        self._start: Position | None = None
        self._on_position: Callable[[Position], None] | None = None
        self._taken: Callable[[str], int | None] | None = None

    def records(self, on_issue: IssueCallback | None = None, *, start: Position | None = None,
                on_position: Callable[[Position], None] | None = None,
                taken: Callable[[str], int | None] | None = None) -> Iterator[ImportRecord]:
        """The records; a read in order (one backup, or a chain `in_order`) may resume at a
        `start` an earlier read offered to `on_position` (which may raise to stop the read
        there); `taken` names the link an earlier read took a session from (None: not taken),
        for the messages that left their sessions' place."""
        if start is not None and not self.in_order:
            raise ValueError("a chain read newest link first cannot resume: its messages come "
                             "after all its sessions")
        self._start, self._on_position, self._taken = start, on_position, taken
        return super().records(on_issue)

    def owners(self, on_issue: IssueCallback | None = None) -> set[ObjectId]:
        """Who owns the chain's projects as of its newest link (an instance restore's shards):
        reads the manifests, the deletions and the projects members (each checked)."""
        reporter = Reporter(on_issue)
        links = self._links()
        for link in links:
            self._check(link, reporter)
        return {doc["user_id"] for doc in self._projects(links, reporter).values()
                if isinstance(doc.get("user_id"), ObjectId)}

    def _links(self) -> list[_Link]:
        return [_Link(i, opener, self._name(i, len(self.chain)))
                for i, opener in enumerate([*self.chain, self.opener])]

    def _records(self, reporter: Reporter) -> Iterator[ImportRecord]:
        links = self._links()
        for link in links:
            self._check(link, reporter)
        projects = self._projects(links, reporter)
        if self.owner is not None:
            projects = {key: doc for key, doc in projects.items()
                        if doc.get("user_id") == self.owner}
        walk = _Walk(projects, self.selection, self.owner is not None, reporter)
        self.chosen = walk.chosen
        if self.in_order:
            yield from self._in_order(links, walk, reporter)
            return
        for link in reversed(links):  # the newest version of a session wins
            for doc, where in self._documents(link, "sessions", reporter):
                yield from walk.session(doc, where, link)
            walk.gone |= link.deleted_sessions
        yield from walk.projects_left()
        if self.sessions_only:
            return
        for link in reversed(links):
            for doc, where in self._documents(link, "messages", reporter):
                if walk.chosen.get(str(doc.get("sessionId"))) == link.number:
                    yield ImportRecord(RecordKind.MESSAGE, doc, where)

    def _in_order(self, links: list[_Link], walk: _Walk, reporter: Reporter
                  ) -> Iterator[ImportRecord]:
        """Each session followed by its messages: a backup's `messages/` members hold the
        messages in the order of the sessions in its `sessions/` members (the export worker
        writes a session, then its messages), so each link's two streams are walked side by
        side, and a chain's links are merged in sessionId order (the order dataport writes a
        backup's sessions in): of a sessionId's versions the newest link's is taken unless a
        newer link deleted it (as the newest-first read decides). Messages that do not follow
        their session's place (a backup made by other means) come at the end, each link's
        newest first: the source is then not grouped. The read offers where it could resume
        at each checked `sessions/` member's end, and at each checked `messages/` member's
        end of those late messages."""
        start = self._start or Position(tuple(Cursor() for _ in links))
        if len(start.links) != len(links):
            raise ValueError("a position of another chain")
        walk.resume(start)
        streams = [_Stream(self, link, cursor, reporter, ordered=len(links) > 1)
                   for link, cursor in zip(links, start.links, strict=True)]
        newest_first = sorted(streams, key=lambda s: -s.link.number)

        def offer(late: bool) -> None:
            if self._on_position is not None:
                self._on_position(Position(tuple(s.cursor() for s in streams), late,
                                           tuple(walk.yielded), walk.last_project))

        for stream in streams:
            stream.offer = offer
            stream.others_left = lambda me=stream: any(  # type: ignore[misc]
                s.head is not None or not s.sessions_done for s in streams if s is not me)
        for stream in streams:
            stream.open(late=start.late)
        if not start.late:
            while live := [s for s in newest_first if s.head is not None]:
                session_id = min(s.head_id for s in live)
                group = [s for s in live if s.head_id == session_id]
                for stream in group:
                    doc, where = stream.consume()
                    taken = walk.session(doc, where, stream.link,
                                         gone=_Newer(links, stream.link.number))
                    yield from taken
                    yield from stream.messages_of(session_id, give=bool(taken))
                for stream in group:
                    stream.refill()
            yield from walk.projects_left()
        self.out_of_place = start.late or any(s.message is not None for s in streams)
        for stream in newest_first:
            stream.late = True
            for doc, where in stream.rest():
                session_id = str(doc.get("sessionId"))
                link = walk.chosen.get(session_id)
                if link is None and session_id not in walk.chosen and self._taken is not None:
                    link = self._taken(session_id)
                if link == stream.link.number:
                    yield ImportRecord(RecordKind.MESSAGE, doc, where)

    def _name(self, number: int, parents: int) -> str:
        return self.filename if number == parents else f"{self.filename} (chain link {number})"

    # ------------------------------------------------------------------------ the container

    def _check(self, link: _Link, reporter: Reporter) -> None:
        """The manifest, the members against it (none missing, none unlisted) and the
        deletions of an increment. The members' contents are checked as they stream by
        (`_lines`, at each member's end), so the validation pass reads the backup once."""
        with self._archive(link) as archive:
            link.manifest = read_manifest(archive, link.name)
            if link.number == len(self.chain):  # the newest link: the one restored
                self.message_layout = link.manifest.message_layout
            present = {m.name: m for m in archive.members}
            listed = {m.path for m in link.manifest.members}
            for name in present:
                if name != MANIFEST_NAME and name not in listed:
                    reporter.error(issue(IssueCode.CHECKSUM_MISMATCH, f"{link.name}: {name} is "
                                         "not listed in manifest.json: the backup was changed",
                                         file=name))
            for entry in link.manifest.members:
                member = present.get(entry.path)
                if member is None:
                    reporter.error(issue(IssueCode.CHECKSUM_MISMATCH, f"{link.name}: "
                                         f"{entry.path} is listed in manifest.json but not in "
                                         "the backup", file=entry.path))
                elif entry.path == DELETIONS_MEMBER:
                    for line, doc in self._lines(archive, member, entry, link, reporter):
                        self._deletion(link, doc, entry.path, line, reporter)

    def _deletion(self, link: _Link, doc: dict[str, Any], file: str, line: int,
                  reporter: Reporter) -> None:
        collection = doc.get("collection")
        if collection == "sessions" and isinstance(doc.get("sessionId"), str):
            link.deleted_sessions.add(doc["sessionId"])
        elif collection == "projects" and isinstance(doc.get("_id"), ObjectId):
            link.deleted_projects.add(doc["_id"])
        else:
            reporter.error(issue(IssueCode.INVALID_RECORD, "a deletion names neither a session "
                                 "(sessionId) nor a project (_id)", file=file, line=line))

    def _projects(self, links: list[_Link], reporter: Reporter) -> dict[object, dict[str, Any]]:
        """The chain's projects by _id as of the newest link (held: a user has few)."""
        found: dict[object, dict[str, Any]] = {}
        gone: set[ObjectId] = set()
        for link in reversed(links):
            for doc, _ in self._documents(link, "projects", reporter):
                if doc.get("_id") not in found and doc.get("_id") not in gone:
                    found[doc.get("_id")] = doc
            gone |= link.deleted_projects
        return found

    def _documents(self, link: _Link, collection: str, reporter: Reporter, *,
                   at: tuple[int, int] = (0, 0), ended: Callable[[int], None] | None = None
                   ) -> Iterator[tuple[dict[str, Any], Location]]:
        """A link's documents of one collection, member by member, in the manifest's order;
        from member `at[0]`, its lines before `at[1]` read (checked) but not given; `ended`
        told each member's number once it is read and checked."""
        assert link.manifest is not None  # _check read it
        entries = [m for m in link.manifest.members if m.collection == collection
                   and m.path != DELETIONS_MEMBER]
        if len(entries) <= at[0]:
            return
        with self._archive(link) as archive:
            present = {m.name: m for m in archive.members}
            for number, entry in enumerate(entries[at[0]:], at[0]):
                member = present.get(entry.path)
                if member is None:
                    continue  # reported by _check
                skip = at[1] if number == at[0] else 0
                for line, doc in self._lines(archive, member, entry, link, reporter, skip=skip):
                    yield doc, Location(entry.path, line)
                if ended is not None:
                    ended(number)

    def _archive(self, link: _Link) -> _OpenArchive:
        return _OpenArchive(link.opener, link.name, self.limits, self.password)

    def _lines(self, archive: SafeZip, member: ZipMember, entry: MemberEntry, link: _Link,
               reporter: Reporter, *, skip: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """A member's documents, decompressed as they stream; its checksums checked at its end
        (a mismatch is an error of the report: nothing is written after one). Lines numbered
        before `skip` are read, hashed and counted, not parsed (an earlier read gave them)."""
        with archive.open(member) as stored:
            lines = _Inflated(stored, entry.bytes)
            count = 0
            try:
                for number, raw in iter_lines(lines, self.limits.max_line_bytes):
                    if number < skip:
                        count += 1 if raw is not None and raw.strip() else 0
                        continue
                    if raw is None:
                        reporter.error(issue(IssueCode.LINE_TOO_LONG, f"a line of {entry.path} "
                                             f"is longer than {self.limits.max_line_bytes} "
                                             "bytes", file=entry.path, line=number))
                        continue
                    if not raw.strip():
                        continue
                    count += 1
                    doc = _document(raw, entry.path, number, reporter,
                                    link.manifest.format_version if link.manifest else 1)
                    if doc is not None:
                        yield number, doc
                _drain(stored)
                problem = lines.problem or _mismatch(entry, stored, lines, count)
            except BadInput as damaged:  # the zip's own CRC found it first
                if damaged.issue.code != IssueCode.INVALID_ZIP:
                    raise
                problem = f"its stored bytes are damaged ({damaged.issue.message})"
        if problem:
            reporter.error(issue(IssueCode.CHECKSUM_MISMATCH, f"{link.name}: {entry.path}: "
                                 f"{problem}; the backup was changed or damaged after it was "
                                 "made, and nothing of it is restored", file=entry.path))


class _Stream:
    """One link of a read in order: its `sessions/` and `messages/` members walked side by
    side (`head`: its next session, `message`: its next message), and where it stands."""

    def __init__(self, source: BackupSource, link: _Link, cursor: Cursor, reporter: Reporter,
                 *, ordered: bool) -> None:
        assert link.manifest is not None  # _check read it
        self.source, self.link, self.reporter, self.ordered = source, link, reporter, ordered
        self.session_files = _numbered(link.manifest, "sessions")
        self.message_files = _numbered(link.manifest, "messages")
        self.sat = (cursor.sessions, cursor.session_line)  # the next session's place
        self.mat = (cursor.messages, cursor.line)  # the next message's place
        self.head: tuple[dict[str, Any], Location] | None = None
        self.head_id = ""
        self.message: tuple[dict[str, Any], Location] | None = None
        self.sessions_done = False
        self.late = False
        self.offer: Callable[[bool], None] = lambda _late: None
        self.others_left: Callable[[], bool] = lambda: False
        self._sessions: Iterator[tuple[dict[str, Any], Location]] = iter(())
        self._messages: Iterator[tuple[dict[str, Any], Location]] = iter(())

    def open(self, *, late: bool) -> None:
        if not self.source.sessions_only:
            self._messages = self.source._documents(self.link, "messages", self.reporter,
                                                    at=self.mat, ended=self._messages_ended)
            self._next_message()
        if late:
            self.sessions_done = True
        else:
            self._sessions = self.source._documents(self.link, "sessions", self.reporter,
                                                    at=self.sat, ended=self._sessions_ended)
            self.refill()

    def cursor(self) -> Cursor:
        return Cursor(sessions=self.sat[0], session_line=self.sat[1], messages=self.mat[0],
                      line=self.mat[1])

    def consume(self) -> tuple[dict[str, Any], Location]:
        assert self.head is not None
        head, self.head = self.head, None
        self.sat = (self.session_files[head[1].file], (head[1].line or 0) + 1)
        return head

    def refill(self) -> None:
        """The next session (its member's end, checked, may offer a position first)."""
        head = next(self._sessions, None)
        if head is None:
            self.sessions_done = True
            self.sat = (len(self.session_files), 0)
            return
        session_id = str(head[0].get("sessionId"))
        if self.ordered and session_id < self.head_id:
            raise NotInOrder(f"{self.link.name}: {head[1].file}")
        self.head, self.head_id = head, session_id
        self.sat = (self.session_files[head[1].file], head[1].line or 0)

    def messages_of(self, session_id: str, *, give: bool) -> Iterator[ImportRecord]:
        """The messages in the session's place (given when the session was taken)."""
        while self.message is not None and str(self.message[0].get("sessionId")) == session_id:
            if give:
                yield ImportRecord(RecordKind.MESSAGE, *self.message)
            self._next_message()

    def rest(self) -> Iterator[tuple[dict[str, Any], Location]]:
        """The messages left once every session is read (away from their sessions' place)."""
        while self.message is not None:
            yield self.message
            self._next_message()

    def _next_message(self) -> None:
        self.message = next(self._messages, None)
        self.mat = ((len(self.message_files), 0) if self.message is None
                    else (self.message_files[self.message[1].file], self.message[1].line or 0))

    def _sessions_ended(self, number: int) -> None:
        self.sat = (number + 1, 0)
        if number + 1 < len(self.session_files) or self.others_left():
            self.offer(False)

    def _messages_ended(self, number: int) -> None:
        self.mat = (number + 1, 0)
        if self.late and number + 1 < len(self.message_files):
            self.offer(True)


def _numbered(manifest: BackupManifest, collection: str) -> dict[str, int]:
    """A link's members of one collection by path: their number in the manifest's order."""
    return {entry.path: n for n, entry in enumerate(
        m for m in manifest.members if m.collection == collection and m.path != DELETIONS_MEMBER)}


class _Newer:
    """The sessions a link newer than `number` deleted: its version of them is not taken."""

    def __init__(self, links: list[_Link], number: int) -> None:
        self._links = links[number + 1:]

    def __contains__(self, session_id: object) -> bool:
        return any(session_id in link.deleted_sessions for link in self._links)


class _Walk:
    """Which sessions a restore takes, as the sessions stream by (newest link first): the
    selection, the shard's owner, the chain's deletions; each taken session preceded by its
    project when that changes. `chosen` remembers the link each session's version comes from
    (its messages are taken from that link only)."""

    def __init__(self, projects: dict[object, dict[str, Any]], selection: Selection,
                 owned: bool, reporter: Reporter) -> None:
        self.projects = projects
        self.selection = selection
        self.owned = owned
        self.reporter = reporter
        self.chosen: dict[str, int] = {}
        self.gone: set[str] = set()
        self.last_project: object = None
        self.yielded: dict[object, None] = {}  # in order: a resumed walk gives the same

    def resume(self, start: Position) -> None:
        self.yielded = dict.fromkeys(start.yielded)
        self.last_project = start.last_project

    def session(self, doc: dict[str, Any], where: Location, link: _Link,
                gone: Container[str] | None = None) -> list[ImportRecord]:
        """The records a session gives (its project first when that changes), or none;
        `gone`: what newer links deleted (else what the walk was told so far)."""
        session_id = str(doc.get("sessionId"))
        if session_id in self.chosen or session_id in (self.gone if gone is None else gone):
            return []
        project = self.projects.get(doc.get("projectId"))
        if not self.selection.takes(doc, project):
            return []
        if project is None and self.owned:
            return []  # another user's (or nobody's): not this shard's
        self.chosen[session_id] = link.number
        if project is None:
            self.reporter.error(issue(IssueCode.MISSING_FIELD, f"session {session_id} names "
                                      f"project {doc.get('projectId')}, which the backup does "
                                      "not hold", file=where.file, line=where.line))
            return []
        records = []
        if project["_id"] != self.last_project:
            self.last_project = project["_id"]
            self.yielded[project["_id"]] = None
            records.append(ImportRecord(RecordKind.PROJECT, dict(project), where))
        records.append(ImportRecord(RecordKind.SESSION, doc, where))
        return records

    def projects_left(self) -> Iterator[ImportRecord]:
        """Projects without sessions (a full restore keeps them), unless a selection limits
        the restore."""
        if not self.selection.everything:
            return
        for project in self.projects.values():
            if project["_id"] not in self.yielded:
                yield ImportRecord(RecordKind.PROJECT, dict(project), Location(MANIFEST_NAME))


class _OpenArchive:
    """A link's zip, opened for one read (the context manager SafeZip wants a stream for)."""

    def __init__(self, opener: Opener, name: str, limits: ImportLimits,
                 password: bytes | None) -> None:
        self._opener, self._name, self._limits, self._password = opener, name, limits, password
        self._stream: IO[bytes] | None = None
        self._zip: SafeZip | None = None

    def __enter__(self) -> SafeZip:
        self._stream = self._opener()
        try:
            self._zip = SafeZip(self._stream, file=self._name, limits=self._limits,
                                password=self._password)
        except BaseException:
            self._stream.close()
            raise
        return self._zip

    def __exit__(self, *exc: object) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._stream is not None:
            self._stream.close()


class _Inflated:
    """A member's zstd frame decompressed a chunk at a time, with the SHA-256 and size of what
    came out; reading stops (with a problem) past `declared` bytes: no zstd bomb inflates."""

    def __init__(self, stored: GuardedMember, declared: int) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], stored),
                                                                  read_size=_CHUNK)
        self._declared = declared
        self.size = 0
        self.digest = hashlib.sha256()
        self.problem: str | None = None

    def read(self, size: int = -1, /) -> bytes:
        if self.problem:
            return b""
        try:
            data = self._reader.read(_CHUNK if size < 0 else size)
        except zstandard.ZstdError as exc:
            self.problem = f"it does not decompress ({exc})"
            return b""
        self.size += len(data)
        if self.size > self._declared:
            self.problem = (f"it decompresses to more than the {self._declared} bytes "
                            "manifest.json declares")
            return b""
        self.digest.update(data)
        return data


def _drain(stored: GuardedMember) -> None:
    """Read a member to its end (zstd may stop at the frame's end): its stored bytes' SHA-256
    covers all of them."""
    while stored.read(_CHUNK):
        pass


def _mismatch(entry: MemberEntry, stored: GuardedMember, lines: _Inflated,
              count: int) -> str | None:
    if stored.inflated != entry.compressed_bytes or stored.sha256 != entry.compressed_sha256:
        return "its stored bytes are not the ones manifest.json lists (size or SHA-256)"
    if lines.size != entry.bytes or lines.digest.hexdigest() != entry.sha256:
        return "its decompressed lines are not the ones manifest.json lists (size or SHA-256)"
    if count != entry.records:
        return f"it holds {count} records, manifest.json says {entry.records}"
    return None


def _document(raw: bytes, file: str, line: int, reporter: Reporter,
              version: int) -> dict[str, Any] | None:
    try:
        doc = loads_line(raw, version)  # the format version's escape undone
    except (ValueError, TypeError, RecursionError, BSONError) as exc:
        reporter.error(issue(IssueCode.INVALID_EXTENDED_JSON, f"a line is not canonical "
                             f"Extended JSON ({str(exc)[:200]})", file=file, line=line))
        return None
    if not isinstance(doc, dict):
        reporter.error(issue(IssueCode.INVALID_RECORD, "a line is not a JSON object",
                             file=file, line=line))
        return None
    return doc


#: chain links for `BackupSource`: openers of the parents, oldest first
ChainOpeners = Sequence[Callable[[], IO[bytes]]]
