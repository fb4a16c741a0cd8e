"""Ctrl-C while waiting for a job: cancel it on the server, or leave it running."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from dataport_cli.context import State
from dataport_cli.exit_codes import CliError, ExitCode


def ask(state: State, noun: str, path: str, job_id: str, *, cancellable: bool = True,
        ) -> NoReturn:
    """Asks (on a terminal, not in --json mode: there the job is left running). "cancel" sends
    DELETE and exits 1 (the job was cancelled; a restore's cancel then undoes what it wrote);
    "leave" exits 130 with how to pick it up. A job the API cannot cancel (a rollback) is left
    running without a question."""
    choice = "leave"
    if cancellable and not state.output.json and sys.stdin.isatty():
        try:
            choice = click.prompt(f"\nInterrupted. Cancel the {noun} on the server, or leave it "
                                  "running?", type=click.Choice(["cancel", "leave"]),
                                  default="leave")
        except (click.Abort, KeyboardInterrupt):
            choice = "leave"
    if choice == "cancel":
        job = state.api.call("DELETE", path)
        state.output.document({"jobId": job_id, "status": job.get("status")})
        raise CliError(ExitCode.FAILED, f"The {noun} {job_id} was cancelled "
                                        f"({job.get('status')}).")
    state.output.document({"jobId": job_id, "status": "left running"})
    raise CliError(ExitCode.INTERRUPTED, f"The {noun} {job_id} goes on without you: "
                                         f"`dataport watch {job_id}`.")
