"""Which writer writes which export format: the one place a format name becomes a class.

Writers are imported when first asked for: the PDF writer brings fpdf2 and fontTools (~35 MB
and ~0.4 s), which a worker writing CSV should not pay for at cold start.
"""

from __future__ import annotations

from importlib import import_module
from typing import cast

from dataport.errors import NotSupported
from dataport.formats.base import ExportWriter
from dataport.models.exports import ExportFormat

WRITERS: dict[ExportFormat, str] = {
    ExportFormat.JSON: "dataport.formats.json_format:JsonWriter",
    ExportFormat.JSONL: "dataport.formats.jsonl:JsonlWriter",
    ExportFormat.CSV: "dataport.formats.csv_format:CsvWriter",
    ExportFormat.MARKDOWN: "dataport.formats.markdown:MarkdownWriter",
    ExportFormat.PDF: "dataport.formats.pdf:PdfWriter",
}


def writer_for(format: ExportFormat) -> type[ExportWriter]:
    """The writer class for a format; NotSupported for a format we cannot write."""
    try:
        module, name = WRITERS[ExportFormat(format)].split(":")
    except (KeyError, ValueError):
        raise NotSupported(f"export format {format!r} is not supported",
                           details={"format": str(format)}) from None
    return cast(type[ExportWriter], getattr(import_module(module), name))
