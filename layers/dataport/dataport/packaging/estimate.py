"""What an export will weigh and take, from counts alone (`POST /exports/estimate`).

The model is linear and deliberately simple (docs/exports.md, "Estimates"):

    package bytes = FIXED_BYTES[format] + messages x MESSAGE_BYTES[format]
    seconds       = FIXED_SECONDS + messages / MESSAGES_PER_SECOND[format]

The byte constants were fitted on the seeded data set (infrastructure/local/seed.py: Claude
Code sessions with tool calls, deflate level 6) by exporting 126 and 1,030 messages in every
format on 2026-12-05: the zip grew by that many bytes per message, and the fixed part is the
manifest, the projects file and the zip's directory (PDF: the embedded fonts). The rates are
those of docs/performance.md's runs (JSON about 5,000 messages a second end to end, PDF about
250). Real conversations vary with how much text and tool output they hold: the answer is an
order of magnitude, not a promise. With message-level filters the message count is the
sessions' `messageCount` sum, an overestimate, as the plan's shard sizing uses it.
"""

from __future__ import annotations

from typing import Final

from dataport.models.exports import ExportFormat

FIXED_BYTES: Final = {ExportFormat.JSON: 3_300, ExportFormat.JSONL: 3_700,
                      ExportFormat.CSV: 3_700, ExportFormat.MARKDOWN: 3_400,
                      ExportFormat.PDF: 80_000}
#: the zip's growth per message (compressed)
MESSAGE_BYTES: Final = {ExportFormat.JSON: 158, ExportFormat.JSONL: 119, ExportFormat.CSV: 41,
                        ExportFormat.MARKDOWN: 65, ExportFormat.PDF: 261}
#: planning, the Step Functions transitions and the assembly, whatever the size
FIXED_SECONDS: Final = 2.0
MESSAGES_PER_SECOND: Final = {ExportFormat.JSON: 5_000, ExportFormat.JSONL: 5_000,
                              ExportFormat.CSV: 5_000, ExportFormat.MARKDOWN: 5_000,
                              ExportFormat.PDF: 250}


def package_bytes(export_format: ExportFormat, messages: int) -> int:
    return FIXED_BYTES[export_format] + messages * MESSAGE_BYTES[export_format]


def duration_seconds(export_format: ExportFormat, messages: int) -> int:
    return round(FIXED_SECONDS + messages / MESSAGES_PER_SECOND[export_format])
