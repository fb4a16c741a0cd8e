"""The lossless JSON format: dataport's own package, which a later import restores field for field.

`conversations-NNNN.json` (always numbered) is one complete JSON document per file:

    {"format": "dataport.conversations", "version": 1, "generator", "exportedAt", "jobId",
     "owner", "sessions": [{<session document>, "project": {<project document>},
                            "messages": [<message document>, ...]}, ...]}

Every document is canonical Extended JSON (`$oid`, `$date`, `$numberDecimal`, `$numberInt`,
`$numberLong`, ...), so `json_util.loads` gives back the very BSON types that went in. The file
is streamed: the envelope, then each session's opening, then each message as it arrives.

For the import side: a session may appear in several files (a file rolled over at the split
size, or the next worker invocation continued the session): the session fields and the project
are repeated and the messages of all its entries together are the session's messages. Inside a
session entry, `project` and `messages` are ours; every other key is the session document.
`projects.json` (numbered only when split) lists all the owner's projects in scope.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

import dataport
from dataport.formats.base import ExportContext, ExportWriter, FileSink, Numbering
from dataport.formats.common import canonical_json, iso_ms
from dataport.formats.rolling import RollingFile
from dataport.models.documents import RawDocument

FORMAT_VERSION = 1
CONVERSATIONS_FORMAT = "dataport.conversations"
PROJECTS_FORMAT = "dataport.projects"
#: keys a session entry adds next to the session document's own fields
SESSION_ENTRY_KEYS = ("project", "messages")

_CLOSE_LIST = b"\n]}"  # closes a session's messages and the session; also the envelope's list
_CLOSE_DOCUMENT = _CLOSE_LIST + b"\n"


class JsonWriter(ExportWriter):
    """Writes `conversations-NNNN.json` and `projects.json` (see the module docstring)."""

    extension = "json"

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int) -> None:
        super().__init__(sink, context=context, split_bytes=split_bytes)
        self._file = RollingFile(sink, "conversations.json", split_bytes=split_bytes,
                                 numbering=Numbering.ALWAYS,
                                 header=self._new_part, footer=self._end_part)
        self._session_head = b""  # `{<session fields>,"project":{...},"messages":[`
        self._session_id = ""
        self._session_messages = 0  # messages written for the current session (all parts)
        self._sessions_in_part = 0  # session entries begun in the open part
        self._session_open_in_part = False
        self._projects_in_part = 0

    # --- the file's frame ---------------------------------------------------------------------

    def _new_part(self) -> bytes:
        self._sessions_in_part = 0
        self._session_open_in_part = False
        return envelope(CONVERSATIONS_FORMAT, self.context, "sessions")

    def _end_part(self) -> bytes:
        closing = _CLOSE_LIST if self._session_open_in_part else b""
        self._session_open_in_part = False
        return closing + _CLOSE_DOCUMENT

    # --- sessions and messages ------------------------------------------------------------------

    def begin_session(self, project: RawDocument, session: RawDocument) -> None:
        clash = [key for key in SESSION_ENTRY_KEYS if key in session]
        if clash:
            # writing them twice would make the JSON ambiguous and the import lossy
            raise ValueError(f"session {session.get('sessionId')} has fields reserved by the "
                             f"export format: {', '.join(clash)}")
        fields = canonical_json(session)[:-1]  # the session document, still open
        separator = b"," if fields != b"{" else b""
        self._session_head = (fields + separator + b'"project":' + canonical_json(project)
                              + b',"messages":[')
        self._session_id = str(session.get("sessionId"))
        self._session_messages = 0
        self._session_open_in_part = False

    def _entry_start(self) -> bytes:
        """What a session entry starts with in the open part."""
        return (b",\n" if self._sessions_in_part else b"\n") + self._session_head

    def write_message(self, message: RawDocument) -> None:
        body = canonical_json(message)

        def render() -> bytes:
            if self._session_open_in_part:
                return b",\n" + body
            return self._entry_start() + b"\n" + body

        self._file.write(render, trailer_bytes=len(_CLOSE_LIST) + len(_CLOSE_DOCUMENT),
                         label=f"message {message.get('uuid')} of session {self._session_id}")
        if not self._session_open_in_part:
            self._sessions_in_part += 1
            self._session_open_in_part = True
        self._session_messages += 1

    def end_session(self) -> None:
        if self._session_open_in_part:
            self._file.write_reserved(_CLOSE_LIST)
            self._session_open_in_part = False
        elif self._session_messages == 0:
            # a session without messages is still part of the owner's data
            self._file.write(lambda: self._entry_start() + b"]}", records=0,
                             trailer_bytes=len(_CLOSE_DOCUMENT),
                             label=f"session {self._session_id}")
            self._sessions_in_part += 1
        self._session_head = b""

    def close(self) -> None:
        self._file.close()

    # --- projects -----------------------------------------------------------------------------

    def write_projects(self, projects: Sequence[RawDocument]) -> None:
        file = RollingFile(self.sink, "projects.json", split_bytes=self.split_bytes,
                           header=self._new_projects_part, footer=lambda: _CLOSE_DOCUMENT)
        for project in projects:
            body = canonical_json(project)

            def render(body: bytes = body) -> bytes:
                return (b",\n" if self._projects_in_part else b"\n") + body

            file.write(render, trailer_bytes=len(_CLOSE_DOCUMENT),
                       label=f"project {project.get('_id')}")
            self._projects_in_part += 1
        file.ensure_open()  # an owner without projects still gets a (valid, empty) file
        file.close()

    def _new_projects_part(self) -> bytes:
        self._projects_in_part = 0
        return envelope(PROJECTS_FORMAT, self.context, "projects")


def envelope(format_name: str, context: ExportContext, list_key: str) -> bytes:
    """The opening of a document: who wrote it, for whom, and the list that follows."""
    head: dict[str, object] = {
        "format": format_name,
        "version": FORMAT_VERSION,
        "generator": dataport.GENERATOR,
        "exportedAt": iso_ms(context.created_at),
        "jobId": context.job_id,
        "owner": context.owner_id,
    }
    return orjson.dumps(head)[:-1] + b',"' + list_key.encode() + b'":['

