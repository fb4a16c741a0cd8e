"""`dataport import FILE` and `dataport imports list|show|execute|rollback|cancel`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from dataport_cli.api import Json
from dataport_cli.context import State, confirm_or_stop, json_option, state
from dataport_cli.exit_codes import CliError, ExitCode
from dataport_cli.exports_cmd import job_id_arg
from dataport_cli.live import follow_live, roll_back
from dataport_cli.ui import kv_table

STRATEGIES = ["skip", "replace", "merge"]
#: where validation stops: a decision is needed, or the report refused the file
DECISION = {"awaiting_decision", "failed", "cancelled"}

IMPORT_HELP = """Import a dataport package, Claude Code transcripts or a CSV: uploads it, shows
the validation report and the conflicts, asks, executes and follows it live.

\b
Examples:
  dataport import dataport-json-20261205.zip --strategy merge
  dataport import backup.zip --dry-run --yes          # what would happen; nothing written
  dataport imports execute <jobId> --strategy merge --yes   # then for real
  dataport imports rollback <jobId>                    # undo it"""


@click.command("import", help=IMPORT_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strategy", type=click.Choice(STRATEGIES), default="skip", show_default=True,
              help="For sessions you already have.")
@click.option("--dry-run", is_flag=True, help="Say what would happen; write nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before executing.")
@click.option("--password-prompt", is_flag=True, help="Asks for an encrypted package's "
              "password.")
@click.option("--source-format", type=click.Choice(["dataport", "claude_jsonl", "csv"]),
              help="Instead of detecting it.")
@click.option("--project-path", help="Project for transcripts that do not name one.")
@click.option("--idempotency-key")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@json_option
def import_file(file: Path, strategy: str, dry_run: bool, yes: bool, password_prompt: bool,
                source_format: str | None, project_path: str | None,
                idempotency_key: str | None, timeout: float | None) -> None:
    st = state()
    out = st.output
    body: Json = {"filename": file.name, "size": file.stat().st_size}
    options = {k: v for k, v in {"format": source_format, "projectPath": project_path}.items()
               if v}
    if options:
        body["options"] = options
    if password_prompt:
        body["password"] = click.prompt("Package password", hide_input=True, err=True)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    created = st.api.call("POST", "/imports", json=body, headers=headers)
    job_id = created["jobId"]
    out.say(f"Import {job_id}: uploading {file.name}")
    with out.byte_bar("upload") as bar:
        st.api.upload(created["upload"], file, bar.advance)
    st.api.call("POST", f"/imports/{job_id}/validate")
    job = _follow(st, job_id, DECISION, "validate", timeout)
    report = job.get("report") or {}
    conflicts = _conflicts(st, job_id) if job["status"] == "awaiting_decision" else []
    _show_report(st, report, conflicts)
    if job["status"] != "awaiting_decision":
        _fail(st, job, {"report": report})
    if not dry_run and not yes:
        if out.json or not sys.stdin.isatty():
            raise CliError(ExitCode.USAGE, f"Not executed: pass --yes to execute without a "
                           f"question, or `dataport imports execute {job_id} --yes` now.")
        if not click.confirm(f"Import with strategy {strategy!r}?", default=False):
            st.api.call("DELETE", f"/imports/{job_id}")
            out.document({"jobId": job_id, "status": "cancelled", "report": report})
            raise CliError(ExitCode.FAILED, f"Nothing imported: import {job_id} cancelled.")
    _execute(st, job_id, strategy=strategy, dry_run=dry_run, timeout=timeout,
             extra={"report": report, "conflicts": conflicts})


def _execute(st: State, job_id: str, *, strategy: str, dry_run: bool, timeout: float | None,
             extra: Json) -> None:
    st.api.call("POST", f"/imports/{job_id}/execute",
                json={"strategy": strategy, "dryRun": dry_run})
    job = _follow(st, job_id, {"awaiting_decision"} if dry_run else set(),
                  "dry run" if dry_run else "import", timeout)
    if dry_run and job["status"] == "awaiting_decision":
        job = st.api.call("GET", f"/imports/{job_id}")
        show_outcome(st, job.get("dryRun") or {}, "Dry run (nothing written)")
        st.output.say(f"Execute it: `dataport imports execute {job_id} --strategy {strategy}`")
        st.output.document({"jobId": job_id, "status": job["status"],
                            "dryRun": job.get("dryRun"), **extra})
        return
    if job["status"] != "succeeded":
        _fail(st, job, extra)
    job = st.api.call("GET", f"/imports/{job_id}")
    show_outcome(st, job.get("outcome") or {}, "Imported")
    st.output.say(f"Undo it with `dataport imports rollback {job_id}`")
    st.output.document({"jobId": job_id, "status": job["status"], "outcome": job.get("outcome"),
                        **extra})


def _follow(st: State, job_id: str, until: set[str], label: str, timeout: float | None) -> Json:
    follow_live(st, job_id, f"/imports/{job_id}", label=label, noun="import",
                until=frozenset(until), timeout=timeout)
    view: Json = st.api.call("GET", f"/imports/{job_id}")  # an event holds no report
    return view


def _fail(st: State, job: Json, extra: Json) -> None:
    error = job.get("error") or {}
    st.output.document({"jobId": job["jobId"], "status": job["status"], "error": error, **extra})
    raise CliError(ExitCode.FAILED, f"Import {job['jobId']} {job['status']}: "
                                    f"{error.get('message', 'see the report')}")


def _conflicts(st: State, job_id: str) -> list[Json]:
    page = st.api.call("GET", f"/imports/{job_id}/conflicts", params={"limit": 50})
    conflicts: list[Json] = page.get("conflicts") or []
    return conflicts


def _show_report(st: State, report: Json, conflicts: list[Json]) -> None:
    counts, dates = report.get("counts") or {}, report.get("dateRange") or {}
    summary = report.get("conflicts") or {}
    st.output.table(kv_table("Validation report", [
        ("format", f"{report.get('format', '?')} {report.get('version') or ''}"),
        ("contents", f"{counts.get('projects', 0)} projects, {counts.get('sessions', 0)} "
                     f"sessions, {counts.get('messages', 0)} messages"),
        ("dates", f"{str(dates.get('start', '?'))[:10]} .. {str(dates.get('end', '?'))[:10]}"),
        ("errors", report.get("errorsTotal", 0)), ("warnings", report.get("warningsTotal", 0)),
        ("sessions", f"{summary.get('newSessions', 0)} new, "
                     f"{summary.get('changedSessions', 0)} changed, "
                     f"{summary.get('identicalSessions', 0)} identical")]))
    issues = (report.get("errors") or []) + (report.get("warnings") or [])
    if issues:
        table = Table("severity", "code", "where", "message", title="Issues",
                      title_justify="left")
        for issue in issues[:20]:
            where = f"{issue.get('file') or ''}:{issue.get('line') or ''}".strip(":")
            table.add_row(issue["severity"], issue["code"], where, issue["message"])
        st.output.table(table)
    if conflicts:
        table = Table(Column("session", no_wrap=True, min_width=36), "status", "new", "changed",
                      "identical", "yours only",
                      "suggested", title="Conflicts: sessions you already have",
                      title_justify="left")
        for conflict in conflicts:
            messages = conflict["messages"]
            table.add_row(conflict["sessionId"], conflict["status"], str(messages["new"]),
                          str(messages["changed"]), str(messages["identical"]),
                          str(messages["onlyExisting"]), conflict["suggestedAction"])
        st.output.table(table)


def show_outcome(st: State, outcome: Json, title: str) -> None:
    sessions: dict[str, Any] = outcome.get("sessions") or {}
    messages: dict[str, Any] = outcome.get("messages") or {}
    table = Table("", *sessions.keys(), title=f"{title} ({outcome.get('strategy', '?')})",
                  title_justify="left")
    table.add_row("sessions", *(str(v) for v in sessions.values()))
    st.output.table(table)
    st.output.table(kv_table("", [("messages", ", ".join(f"{v} {k}" for k, v in
                                                         messages.items())),
                                  ("projects created", outcome.get("projectsCreated", 0))]))


@click.group("imports", help="Your imports of the last 30 days.")
def imports() -> None:
    pass


@imports.command("list", help="Your imports, newest first.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def list_imports(limit: int) -> None:
    st = state()
    page = st.api.call("GET", "/imports", params={"limit": limit})
    st.output.document(page)
    table = Table(Column("job", no_wrap=True, min_width=32), "status", "file", "created")
    for job in page["imports"]:
        table.add_row(job["jobId"], job["status"], job["filename"], job["createdAt"][:19])
    st.output.table(table)


@imports.command("show", help="One import: status, report, decision, outcome.")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@json_option
def show_import(job_id: str) -> None:
    st = state()
    job = st.api.call("GET", f"/imports/{job_id}")
    st.output.document(job)
    st.output.table(kv_table(f"import {job_id}", [
        ("status", job["status"]), ("file", job["filename"]),
        ("progress", f"{job['progress']['phase']} {job['progress']['percentage']:.0f}%"),
        ("error", (job.get("error") or {}).get("message", "-"))]))
    if job.get("report"):
        _show_report(st, job["report"], [])
    if job.get("outcome"):
        show_outcome(st, job["outcome"], "Imported")


@imports.command("execute", help="Decide an import waiting for a decision (after a dry run, "
                 "say).\n\n\b\nExample:\n  dataport imports execute <jobId> --strategy merge --yes")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@click.option("--strategy", type=click.Choice(STRATEGIES), default="skip", show_default=True)
@click.option("--dry-run", is_flag=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--timeout", type=float)
@json_option
def execute_import(job_id: str, strategy: str, dry_run: bool, yes: bool,
                   timeout: float | None) -> None:
    st = state()
    if not dry_run and not yes:
        confirm_or_stop(st, f"Import {job_id} with strategy {strategy!r}?")
    _execute(st, job_id, strategy=strategy, dry_run=dry_run, timeout=timeout, extra={})


@imports.command("rollback", help="Undo an import: your data as it was before it.\n\n\b\n"
                 "Example:\n  dataport imports rollback <jobId>")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@click.option("--timeout", type=float)
@json_option
def rollback_import(job_id: str, timeout: float | None) -> None:
    roll_back(state(), "import", job_id, timeout)


@imports.command("cancel", help="Cancel an import that has not finished.")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@json_option
def cancel_import(job_id: str) -> None:
    st = state()
    job = st.api.call("DELETE", f"/imports/{job_id}")
    st.output.document(job)
    st.output.say(f"Import {job_id}: {job['status']}")
