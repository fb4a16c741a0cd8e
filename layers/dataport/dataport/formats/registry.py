"""Which writer writes which export format: the one place a format name becomes a class."""

from __future__ import annotations

from dataport.errors import NotSupported
from dataport.formats.base import ExportWriter
from dataport.formats.csv_format import CsvWriter
from dataport.formats.json_format import JsonWriter
from dataport.formats.jsonl import JsonlWriter
from dataport.formats.markdown import MarkdownWriter
from dataport.formats.pdf import PdfWriter
from dataport.models.exports import ExportFormat

WRITERS: dict[ExportFormat, type[ExportWriter]] = {
    ExportFormat.JSON: JsonWriter,
    ExportFormat.JSONL: JsonlWriter,
    ExportFormat.CSV: CsvWriter,
    ExportFormat.MARKDOWN: MarkdownWriter,
    ExportFormat.PDF: PdfWriter,
}


def writer_for(format: ExportFormat) -> type[ExportWriter]:
    """The writer class for a format; NotSupported for a format we cannot write (yet)."""
    try:
        return WRITERS[ExportFormat(format)]
    except (KeyError, ValueError):
        raise NotSupported(f"export format {format!r} is not supported",
                           details={"format": str(format)}) from None
