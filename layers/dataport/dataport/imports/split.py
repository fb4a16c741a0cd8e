"""A restore's backup cut into shards, read once (workflows.restore_shards' plan).

A restore that runs in shards (an instance restore: a shard per user; a large restore of one
user: several shards of that user) reads its backup **once**, here: the backup reader
(`BackupSource`, every member checked against the manifest as it streams by, the chain
resolved, the selection applied) gives the records, and each goes to its shard's own small
backup, a zip in the backup format (STORED members, each one zstd frame of canonical Extended
JSON lines, `manifest.json` last with every member's counts and both SHA-256s), sealed as it
is written when a `sealer` is given (imports.sealed; the SHA-256 is the plaintext's). A shard's
restore then reads only its own object, checks every member of it against that manifest and
the whole object against the SHA-256 recorded here, as any restore does.

Cutting. A shard belongs to one target user (`owner_of` a project: its `user_id` for an
instance restore, the restore's target otherwise). Sessions go to the user's open shard until
it holds `shard_messages` messages (counted from the sessions' `messageCount`, so a shard is
sized before its messages arrive), then the next session opens the user's next shard: a shard
is a set of whole sessions, a session is never cut. Messages follow their session's shard (one
dict entry per session: the reader holds as much for a chain). A project goes to every shard
that holds one of its sessions; a project without sessions to the user's shard open then.

Packs. An instance restore's small users (a last shard of at most `pack_messages` messages)
share parts: at the end of the split, such shards are stored together, in their order, up to
`pack_messages` messages and `pack_users` users a part, its members one a collection (their
lines shard after shard). Each is still a shard of its own (`ShardPart.shared`: its reader
takes only its user's records), but the part's upload and pin are per pack, not per user. A
reopened shard (below) is never packed.

Memory: a shard being written keeps two member writers (sessions, messages) while it is hot;
at most `HOT_SHARDS` are hot, the coldest one's members are ended (a zstd frame each, on
/tmp) and begun again as new members when it is written to next (an instance backup's users
interleave in sessionId order). Where the reader keeps each session with its messages (one
backup, or a chain read in order; `eager`), a user's full shard is complete when their next
one opens: it is
assembled and uploaded then and its files removed, so /tmp holds the open shards only. A
message that comes after its shard was stored (a backup whose messages left their sessions'
place, made by other means) **reopens** it: the shard begins again with the stored part's
members (read back from it, checked by its seal and each member's CRC, when it is stored
again) and a new member for what comes now, and is stored again at its next generation's key
(`<user>-<n>.<generation>.zip`); the part it replaces is `superseded` (deleted once the plan
no longer needs it). A split handed over (`hand_over`, `load`) finds a message's shard of an
earlier invocation through `earlier` (the plan's stored pages: one entry per session).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, cast

import zstandard
from bson import ObjectId

from dataport.backups.format import (
    MANIFEST_NAME,
    BackupBytes,
    BackupManifest,
    Collection,
    Compression,
    MemberEntry,
    MemberWriter,
    member_path,
)
from dataport.bucket import PackagesBucket
from dataport.imports.sealed import Sealer, sealed_size
from dataport.models.backups import BackupCounts
from dataport.models.documents import MessageLayout
from dataport.models.job_common import UploadPin
from dataport.models.records import ImportRecord, RecordKind

#: shards whose member writers stay open (each ~1.7 MB at zstd level 1: two writers)
HOT_SHARDS = 8
#: the shards' own members are short-lived: the fastest zstd level
SHARD_ZSTD_LEVEL = 1
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
_COPY = 1024 * 1024
#: past this a zip member needs ZIP64 (written without seeking, it must be said up front)
_ZIP64_AFTER = 2**31 - 1


#: a shard: its user and number
ShardKey = tuple[str, int]


@dataclass(frozen=True)
class ShardPart:
    """One shard's object, as the plan made it."""

    user_id: str
    number: int  # the user's shards count from 0
    pin: UploadPin
    sha256: str
    sessions: int
    messages: int
    records: int
    generation: int = 0  # how often it was reopened (its key says so)
    #: the part is a pack: other users' shards share it, and this shard's reader takes only its
    #: user's records (the backup reader's `owner`)
    shared: bool = False


@dataclass
class _Member:
    collection: Collection
    path: str  # on /tmp, or (`key`) stored by an earlier invocation's hand-over
    stats: MemberEntry
    key: str | None = None
    part: UploadPin | None = None  # or a member of a stored part, reopened


@dataclass
class _Shard:
    user_id: str
    number: int
    directory: str
    projects: dict[object, None] = field(default_factory=dict)  # ids, in order
    sessions: int = 0
    messages: int = 0
    planned: int = 0  # messages its sessions declare (the cut)
    members: list[_Member] = field(default_factory=list)
    writers: dict[str, tuple[MemberWriter, IO[bytes], str]] = field(default_factory=dict)
    done: bool = False
    generation: int = 0

    @property
    def key(self) -> ShardKey:
        return self.user_id, self.number


class Splitter:
    """Records in, shard objects out (`finish`). `owner_of(project)` names the user a project's
    sessions are restored into (None: not restored). `abort` leaves nothing behind."""

    def __init__(self, bucket: PackagesBucket, prefix: str, shard_messages: int, *,
                 owner_of: Callable[[dict[str, Any]], str | None],
                 eager: bool, made_at: datetime, hot: int = HOT_SHARDS,
                 sealer: Sealer | None = None, pack_messages: int = 0,
                 pack_users: int = 1) -> None:
        self.bucket = bucket
        #: small users' last shards share a part (a pack) of at most this many messages and
        #: `pack_users` shards: a part's upload and pin per pack, not per user (0: no packs;
        #: only where every shard's user owns its projects: an instance restore's)
        self.pack_messages = pack_messages
        self.pack_users = max(1, pack_users)
        #: seals each part as it is stored (imports.sealed); its SHA-256 is the plaintext's
        self.sealer = sealer
        self.prefix = prefix
        self.shard_messages = max(1, shard_messages)
        self.owner_of = owner_of
        #: the shards' manifests' time: the restore's, so a retried plan writes the same bytes
        #: (the same SHA-256 and ETag its shards were made with)
        self.made_at = made_at
        #: a user's full shard is complete when their next opens (sessions come with their
        #: messages): assembled then, not at the end
        self.eager = eager
        self._tmp = tempfile.mkdtemp(prefix="dataport-split-")
        self._projects: dict[object, dict[str, Any]] = {}
        self._open: dict[str, _Shard] = {}  # per user
        self._counts: dict[str, int] = {}  # shards per user so far
        self._session_shard: dict[str, ShardKey] = {}  # this invocation's sessions
        self._live: dict[ShardKey, _Shard] = {}  # every shard not stored
        #: the shard of a session an earlier invocation read (a split handed over)
        self.earlier: Callable[[str], ShardKey | None] = lambda _session: None
        #: parts replaced by their shard's next generation (deleted once the plan is done)
        self.superseded: list[str] = []
        self._hot: OrderedDict[int, _Shard] = OrderedDict()
        self._hot_max = max(1, hot)
        self._shards: list[_Shard] = []
        self.parts: list[ShardPart] = []
        #: every user's sessionIds (the sessions the backup holds for them: a full restore in
        #: several shards keeps these; the plan stores them for split users)
        self.session_ids: dict[str, list[str]] = {}
        #: every user's project paths the backup holds (kept by a full restore's removal)
        self.project_paths: dict[str, set[str]] = {}
        self._used: dict[str, dict[object, None]] = {}  # per user: projects with sessions
        #: where the backup's source kept its messages (its manifest's `messageLayout`), written
        #: into every part's manifest: each shard writes it into a target with no message
        #: collection yet, so parallel shards never write a mix (the plan sets it from the
        #: reader, which knows it once it has read the manifests, before its first record)
        self.message_layout: MessageLayout | None = None

    def projects_with_sessions(self, user: str) -> list[dict[str, Any]]:
        """The user's projects that some restored session of theirs is in (what a restore
        creates when the target lacks it)."""
        return [self._projects[pid] for pid in self._used.get(user, {}) if pid in self._projects]

    # ------------------------------------------------------------------------ records

    def add(self, record: ImportRecord) -> None:
        doc = record.doc
        if record.kind is RecordKind.PROJECT:
            self._projects[doc.get("_id")] = doc
            user = self.owner_of(doc)
            if user is not None:
                self.project_paths.setdefault(user, set()).add(str(doc.get("path")))
                self._shard_of(user).projects.setdefault(doc.get("_id"))
        elif record.kind is RecordKind.SESSION:
            project = self._projects.get(doc.get("projectId"))
            user = self.owner_of(project) if project is not None else None
            if user is None:
                return
            shard = self._shard_of(user)
            if shard.sessions and shard.planned >= self.shard_messages:
                shard = self._next(user)
            shard.projects.setdefault(doc.get("projectId"))
            self._used.setdefault(user, {}).setdefault(doc.get("projectId"))
            session_id = str(doc.get("sessionId"))
            self._session_shard[session_id] = shard.key
            self.session_ids.setdefault(user, []).append(session_id)
            count = doc.get("messageCount")
            shard.planned += (count if isinstance(count, int) else 0) + 1
            shard.sessions += 1
            self._write(shard, "sessions", doc)
        elif record.kind is RecordKind.MESSAGE:
            session_id = str(doc.get("sessionId"))
            key = self._session_shard.get(session_id) or self.earlier(session_id)
            if key is not None:
                # stored already: a message away from its session's place reopens it
                owner = self._live.get(key) or self._reopen(key)
                owner.messages += 1
                self._write(owner, "messages", doc)

    @property
    def session_shards(self) -> dict[str, ShardKey]:
        """The shard of each session this invocation read (the plan pages them at a
        hand-over, for the messages that come later)."""
        return self._session_shard

    def finish(self) -> list[ShardPart]:
        """Every shard still open assembled and stored, small ones packed together; the parts,
        by user and number."""
        still_open = [shard for shard in self._shards if not shard.done]
        for pack in _packs(still_open, self.pack_messages, self.pack_users):
            self._store(*pack)
        shutil.rmtree(self._tmp, ignore_errors=True)
        return sorted(self.parts, key=lambda p: (p.user_id, p.number))

    def abort(self, *, stored: bool = True) -> None:
        """Nothing on /tmp; with `stored`, no part on S3 either (a split handed over keeps the
        earlier invocations' parts for a retried one: the plan's failure deletes them)."""
        for shard in self._shards:
            for writer, out, _ in shard.writers.values():
                writer.close()
                out.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        if stored:
            self.bucket.delete_prefix(self.prefix)

    # ------------------------------------------------------------------------ shards

    def _shard_of(self, user: str) -> _Shard:
        return self._open.get(user) or self._next(user)

    def _next(self, user: str) -> _Shard:
        previous = self._open.get(user)
        if previous is not None and self.eager:
            self._store(previous)  # complete: its sessions' messages came with them
        number = self._counts.get(user, 0)
        self._counts[user] = number + 1
        directory = os.path.join(self._tmp, f"{len(self._shards):06d}")
        os.mkdir(directory)
        shard = _Shard(user_id=user, number=number, directory=directory)
        self._open[user] = shard
        self._add(shard)
        return shard

    def _add(self, shard: _Shard) -> None:
        self._shards.append(shard)
        self._live[shard.key] = shard

    def _reopen(self, key: ShardKey) -> _Shard:
        """A stored shard begun again: its part's members (read back from it when it is
        stored again), its counts; its part superseded by the next generation's."""
        part = next(p for p in self.parts if (p.user_id, p.number) == key)
        self.parts.remove(part)
        self.superseded.append(part.pin.key)
        with self._part(part.pin) as archive:
            manifest = BackupManifest.from_json(archive.read(MANIFEST_NAME))
        directory = os.path.join(self._tmp, f"{len(self._shards):06d}")
        os.mkdir(directory)
        shard = _Shard(user_id=part.user_id, number=part.number, directory=directory,
                       sessions=part.sessions, messages=part.messages,
                       generation=part.generation + 1, members=[
                           _Member(entry.collection, "", entry, part=part.pin)
                           for entry in manifest.members])
        self._add(shard)
        return shard

    def _write(self, shard: _Shard, collection: Collection, doc: dict[str, Any]) -> None:
        if collection not in shard.writers:
            self._warm(shard)
            path = os.path.join(shard.directory, f"{len(shard.members):06d}-{collection}")
            out = open(path, "wb")  # noqa: SIM115 (closed with the member)
            shard.writers[collection] = (MemberWriter(out.write, level=SHARD_ZSTD_LEVEL), out,
                                         path)
        self._hot.move_to_end(id(shard))
        shard.writers[collection][0].write(doc)

    def _warm(self, shard: _Shard) -> None:
        """The shard among the hot ones; the coldest beyond `hot` has its members ended."""
        self._hot[id(shard)] = shard
        while len(self._hot) > self._hot_max:
            _, cold = self._hot.popitem(last=False)
            self._end_members(cold)

    def _end_members(self, shard: _Shard) -> None:
        # sessions before messages: the reader walks the two side by side in this order
        for collection in ("sessions", "messages"):
            opened = shard.writers.pop(collection, None)
            if opened is None:
                continue
            writer, out, path = opened
            stats = writer.close()
            out.close()
            seq = sum(1 for m in shard.members if m.collection == collection)
            shard.members.append(_Member(collection, path, MemberEntry(
                path=member_path(collection, 1, seq), collection=collection,
                **stats.model_dump())))
        self._hot.pop(id(shard), None)

    def _store(self, *shards: _Shard) -> None:
        """One part: a shard's zip (at its generation's key when it was reopened), or a pack's
        (several users' shards one after the other, one member a collection), its projects,
        sessions and messages members, then its manifest, streamed to S3 (hashed as it goes);
        its files removed."""
        first = shards[0]
        generation = f".{first.generation}" if first.generation else ""
        key = (f"{self.prefix}{first.user_id}-{first.number:05d}{generation}.zip"
               if len(shards) == 1 else f"{self.prefix}pack-{first.user_id}-{first.number:05d}.zip")
        projects: dict[object, None] = {}
        for shard in shards:
            self._end_members(shard)
            projects.update(shard.projects)
        documents = [self._projects[pid] for pid in projects if pid in self._projects]
        with ExitStack() as reopened, self.bucket.open_write(key) as stored:
            parts: dict[str, zipfile.ZipFile] = {}  # a reopened shard's part, opened once
            sealed = self.sealer.writer(stored, key) if self.sealer is not None else None
            hashed = _Hashing(sealed or stored)
            with zipfile.ZipFile(cast(IO[bytes], hashed), "w",
                                 compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                entries = [_projects_member(archive, documents)] if documents else []
                members = list(first.members)
                if len(shards) > 1:  # a pack: one member a collection, its shards in turn
                    members = [self._joined(shards, "sessions"),
                               self._joined(shards, "messages")]
                for member in members:
                    entries.append(member.stats)
                    info = zipfile.ZipInfo(member.stats.path, _ZIP_TIME)
                    size = member.stats.compressed_bytes
                    if member.part is not None and member.part.key not in parts:
                        parts[member.part.key] = reopened.enter_context(self._part(member.part))
                    with self._member(member, parts) as source, archive.open(
                            info, "w", force_zip64=size > _ZIP64_AFTER) as target:
                        shutil.copyfileobj(source, target, _COPY)
                    if member.key is None and member.part is None:
                        os.remove(member.path)
                archive.writestr(zipfile.ZipInfo(MANIFEST_NAME, _ZIP_TIME),
                                 _manifest(shards, entries, self.made_at,
                                           self.message_layout).to_json())
            if sealed is not None:
                sealed.finish()
        pin = self.bucket.pin_written(key)
        # a reopened shard's projects are in its old part's projects member, not in .projects
        projects_alone = sum(e.records for e in entries if e.collection == "projects")
        for shard in shards:
            shutil.rmtree(shard.directory, ignore_errors=True)
            shard.done = True
            self._live.pop(shard.key, None)
            if self._open.get(shard.user_id) is shard:
                del self._open[shard.user_id]
            own = (projects_alone if len(shards) == 1
                   else sum(1 for pid in shard.projects if pid in self._projects))
            self.parts.append(ShardPart(
                user_id=shard.user_id, number=shard.number,
                pin=self.sealer.pinned(pin) if self.sealer is not None else pin,
                sha256=hashed.digest.hexdigest(), sessions=shard.sessions,
                messages=shard.messages, generation=shard.generation,
                records=own + shard.sessions + shard.messages, shared=len(shards) > 1))

    def _joined(self, shards: tuple[_Shard, ...], collection: Collection) -> _Member:
        """A pack's one member of `collection`: its shards' members' lines, shard after shard
        (so its messages stay in the order of its sessions), in one zstd frame; theirs
        removed. A shard reading the pack then reads three members, not three per user (a
        reopened shard, whose members are in a stored part, is never packed: `_packs`)."""
        path = os.path.join(self._tmp, f"pack-{collection}")
        with open(path, "wb") as out:
            writer = MemberWriter(out.write, level=SHARD_ZSTD_LEVEL)
            for shard in shards:
                for member in shard.members:
                    if member.collection != collection:
                        continue
                    with self._member(member, {}) as frame, zstandard.ZstdDecompressor(
                            ).stream_reader(frame) as plain:
                        for line in io.BufferedReader(cast(Any, plain), _COPY):
                            writer.write_line(line)
                    if member.key is None:
                        os.remove(member.path)
            stats = writer.close()
        return _Member(collection, path, MemberEntry(path=member_path(collection, 1, 0),
                                                     collection=collection,
                                                     **stats.model_dump()))

    @contextmanager
    def _member(self, member: _Member, parts: dict[str, zipfile.ZipFile]
                ) -> Iterator[IO[bytes]]:
        """A member's zstd frame: its file, the object an earlier invocation stored, or the
        member of a stored part (`parts`: opened through its seal; its CRC checked as it is
        read)."""
        if member.part is not None:
            with parts[member.part.key].open(member.stats.path) as inner:
                yield inner
        elif member.key is not None:
            stored = self.bucket.open_read(member.key)
            with (stored if self.sealer is None else self.sealer.reader(
                    stored, member.key, sealed_size(member.stats.compressed_bytes))) as opened:
                yield opened
        else:
            with open(member.path, "rb") as local:
                yield local

    @contextmanager
    def _part(self, pin: UploadPin) -> Iterator[zipfile.ZipFile]:
        """A stored part, opened (through its seal: chunks open alone as the zip seeks)."""
        with ExitStack() as stack:
            stored = stack.enter_context(self.bucket.open_read(pin.key))
            if self.sealer is not None:
                stored = stack.enter_context(self.sealer.reader(stored, pin.key, pin.bytes))
            yield stack.enter_context(zipfile.ZipFile(stored))

    # ------------------------------------------------------------------------ hand-over

    def hand_over(self, members_prefix: str) -> dict[str, Any]:
        """What the next invocation needs to go on (`load`), as Extended JSON-ready values:
        every open shard's members ended and stored under `members_prefix` (at keys named by
        the shard and the member's number, so a retried invocation writes the same objects
        again), its files removed; the parts stored so far and those superseded; the
        projects, the per-user counts and lists. Not the sessions' shards (one entry per
        session: `session_shards`, which the plan pages apart, and `earlier` finds them)."""
        shards = []
        for shard in self._shards:
            if shard.done:
                continue
            self._end_members(shard)
            generation = f".{shard.generation}" if shard.generation else ""
            base = f"{members_prefix}{shard.user_id}-{shard.number:05d}{generation}/"
            for number, member in enumerate(shard.members):
                if member.key is None and member.part is None:
                    key = f"{base}{number:06d}-{member.collection}"
                    with open(member.path, "rb") as source, self.bucket.open_write(key) as out:
                        sealed = self.sealer.writer(out, key) if self.sealer else None
                        shutil.copyfileobj(source, sealed or out, _COPY)
                        if sealed is not None:
                            sealed.finish()
                    os.remove(member.path)
                    member.key = key
            shards.append({
                "user": shard.user_id, "number": shard.number, "projects": list(shard.projects),
                "sessions": shard.sessions, "messages": shard.messages,
                "planned": shard.planned, "generation": shard.generation, "members": [
                    {"collection": m.collection, "key": m.key, "stats": m.stats.model_dump(),
                     "part": m.part.model_dump() if m.part is not None else None}
                    for m in shard.members]})
        shutil.rmtree(self._tmp, ignore_errors=True)
        return {
            "projects": list(self._projects.values()), "counts": self._counts, "open": shards,
            "parts": [{**vars(part), "pin": part.pin.model_dump()} for part in self.parts],
            "superseded": self.superseded,
            "projectPaths": {user: sorted(paths) for user, paths in self.project_paths.items()},
            "used": {user: list(ids) for user, ids in self._used.items()},
            "messageLayout": self.message_layout.value if self.message_layout else None}

    def load(self, state: dict[str, Any]) -> None:
        """Go on from an earlier invocation's `hand_over` (a fresh splitter)."""
        self._projects = {doc.get("_id"): doc for doc in state["projects"]}
        self._counts = dict(state["counts"])
        self.parts = [ShardPart(**{**part, "pin": UploadPin.model_validate(part["pin"])})
                      for part in state["parts"]]
        self.project_paths = {user: set(paths) for user, paths in state["projectPaths"].items()}
        self._used = {user: dict.fromkeys(ids) for user, ids in state["used"].items()}
        self.superseded = list(state.get("superseded", []))
        layout = state.get("messageLayout")
        self.message_layout = MessageLayout(layout) if layout else None
        for opened in state["open"]:
            directory = os.path.join(self._tmp, f"{len(self._shards):06d}")
            os.mkdir(directory)
            shard = _Shard(user_id=opened["user"], number=opened["number"],
                           directory=directory, projects=dict.fromkeys(opened["projects"]),
                           sessions=opened["sessions"], messages=opened["messages"],
                           planned=opened["planned"],
                           generation=opened.get("generation", 0), members=[
                               _Member(m["collection"], "", MemberEntry(**m["stats"]),
                                       key=m["key"], part=UploadPin.model_validate(m["part"])
                                       if m.get("part") else None)
                               for m in opened["members"]])
            if not shard.generation:  # a reopened shard takes no more sessions
                self._open[shard.user_id] = shard
            self._add(shard)


def _projects_member(archive: zipfile.ZipFile, projects: list[dict[str, Any]]) -> MemberEntry:
    packed = bytearray()
    writer = MemberWriter(packed.extend, level=SHARD_ZSTD_LEVEL)
    for project in projects:
        writer.write(project)
    stats = writer.close()
    path = member_path("projects", 1, 0)
    archive.writestr(zipfile.ZipInfo(path, _ZIP_TIME), bytes(packed))
    return MemberEntry(path=path, collection="projects", **stats.model_dump())


def _packs(shards: list[_Shard], messages: int, users: int) -> list[list[_Shard]]:
    """The open shards as parts: a large or reopened shard alone, small ones (at most
    `messages` messages) together, in their order, a pack closed at `messages` messages or
    `users` shards (the same packs for the same shards: a retried plan writes the same
    parts)."""
    parts: list[list[_Shard]] = []
    pack: list[_Shard] = []
    held = 0
    for shard in shards:
        if users < 2 or messages <= 0 or shard.messages > messages or shard.generation:
            parts.append([shard])
            continue
        if pack and (held + shard.messages > messages or len(pack) >= users):
            parts.append(pack)
            pack, held = [], 0
        pack.append(shard)
        held += shard.messages
    if pack:
        parts.append(pack)
    return parts


def _manifest(shards: tuple[_Shard, ...], entries: list[MemberEntry], now: datetime,
              layout: MessageLayout | None) -> BackupManifest:
    shard = shards[0]
    alone = len(shards) == 1
    return BackupManifest(
        backup_id=f"{'' if alone else 'pack-'}{shard.user_id}-{shard.number:05d}",
        name="restore shard", scope="user" if alone else "instance",
        owner_id=shard.user_id if alone and ObjectId.is_valid(shard.user_id) else None,
        type="full", watermark=now, created_at=now,
        compression=Compression(level=SHARD_ZSTD_LEVEL), message_layout=layout,
        counts=BackupCounts(projects=sum(e.records for e in entries
                                         if e.collection == "projects"),
                            sessions=sum(s.sessions for s in shards),
                            messages=sum(s.messages for s in shards)),
        bytes=BackupBytes(uncompressed=sum(e.bytes for e in entries),
                          compressed=sum(e.compressed_bytes for e in entries)),
        members=entries)


class _Hashing:
    """A write-only stream (no tell: zipfile then writes data descriptors and never seeks)
    that hashes what goes through."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self._inner.write(data)
        return len(data)

    def flush(self) -> None:
        self._inner.flush()
