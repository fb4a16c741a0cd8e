"""The exit codes every command keeps (documented in `dataport --help` and client/README.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    DONE = 0
    FAILED = 1  # the job failed or was cancelled, a package did not verify, the service erred
    USAGE = 2  # a bad flag or argument, or a request the API refused as invalid (400)
    AUTH = 3  # no credential, or one the API refused (401, 403)
    NOT_FOUND = 4  # no such job or key for this account (404, 410)
    RATE_LIMITED = 5  # 429: the time to retry at is on stderr
    INTERRUPTED = 130  # Ctrl-C while waiting, the job left running


HELP = """Exit codes: 0 done; 1 the job failed or was cancelled, or a package or backup did not
verify;
2 usage error; 3 authentication error; 4 not found; 5 rate limited (the time to retry is on
stderr); 130 interrupted with the job left running."""


class CliError(Exception):
    """Ends the command with `code` and `message` on stderr (never a credential)."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
