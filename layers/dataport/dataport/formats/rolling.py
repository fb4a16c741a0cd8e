"""Split-size bookkeeping shared by every writer: a logical file that rolls over into parts.

Writers describe a file by its path, what every part starts with (`header`) and ends with
(`footer`); `RollingFile` opens parts lazily, keeps each part under the split size and says in
the manifest when a record alone is larger than the split size. Both callbacks run once per
part, so a writer can repeat an envelope, a header row or a title in every part.
"""

from __future__ import annotations

from collections.abc import Callable

from dataport.formats.base import FileSink, Numbering, OutputFile, needs_rollover


def _nothing() -> bytes:
    return b""


class RollingFile:
    """One logical file (`messages.csv`) written as one or more complete parts."""

    def __init__(self, sink: FileSink, path: str, *, split_bytes: int,
                 numbering: Numbering = Numbering.WHEN_SPLIT,
                 header: Callable[[], bytes] = _nothing,
                 footer: Callable[[], bytes] = _nothing) -> None:
        self.sink = sink
        self.path = path
        self.split_bytes = split_bytes
        self.numbering = numbering
        self._header = header
        self._footer = footer
        self._part: OutputFile | None = None
        self._header_bytes = 0
        self.parts_opened = 0

    @property
    def is_open(self) -> bool:
        return self._part is not None

    def ensure_open(self) -> OutputFile:
        """Open a part (header written) if none is open; also for documents that exist when
        empty."""
        if self._part is None:
            self._part = self.sink.open(self.path, self.numbering)
            self.parts_opened += 1
            header = self._header()
            self._header_bytes = len(header)
            if header:
                self._part.write(header)
        return self._part

    def write(self, render: Callable[[], bytes], *, records: int = 1, trailer_bytes: int = 0,
              label: str = "a record") -> None:
        """Write one record, rolling over first if it would not fit with `trailer_bytes` (what
        the footer will add once this record is written). `render` is called again after a
        rollover because a record may start differently in a fresh part (a JSON separator, a
        session that has to be re-opened)."""
        part = self.ensure_open()
        data = render()
        if needs_rollover(part, len(data), self.split_bytes, header_bytes=self._header_bytes,
                          trailer_bytes=trailer_bytes):
            self.finish_part()
            part = self.ensure_open()
            data = render()
        if (part.bytes_written == self._header_bytes
                and self._header_bytes + len(data) + trailer_bytes > self.split_bytes):
            part.add_note(f"{label} alone takes {len(data)} bytes, more than the split size of "
                          f"{self.split_bytes} bytes: it is in a file of its own")
        part.write(data)
        if records:
            part.add_records(records)

    def write_reserved(self, data: bytes) -> None:
        """Write bytes an earlier `write` already counted in its `trailer_bytes` (closing a
        section that the footer would otherwise close): no rollover check."""
        self.ensure_open().write(data)

    def finish_part(self) -> None:
        """Write the footer and close the open part, if any."""
        if self._part is None:
            return
        footer = self._footer()
        if footer:
            self._part.write(footer)
        part, self._part = self._part, None
        self.sink.close(part)

    close = finish_part
