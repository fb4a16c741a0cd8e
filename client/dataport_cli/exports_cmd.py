"""`dataport export` and `dataport exports list|show|cancel|download`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click
from rich.table import Column, Table

from dataport_cli.api import Json
from dataport_cli.context import State, json_option, state
from dataport_cli.exit_codes import CliError, ExitCode
from dataport_cli.live import follow_live
from dataport_cli.ui import kv_table, size
from dataport_cli.verify import PasswordRequired, verify_package

FORMATS = ["json", "jsonl", "csv", "markdown", "pdf"]
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def job_id_arg(value: str) -> str:
    if not JOB_ID.match(value):
        raise click.BadParameter("a job id is 32 hex characters")
    return value


def id_param(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """click callback of every ID argument (jobs, backups, restores, schedules)."""
    return job_id_arg(value)


def date_bound(value: str | None, end: bool) -> str | None:
    if value is None:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # a day: from its start, or to its end
        return f"{value}T23:59:59.999Z" if end else f"{value}T00:00:00Z"
    return value


def request_body(*, export_format: str, projects: tuple[str, ...], sessions: tuple[str, ...],
                 since: str | None, until: str | None, models: tuple[str, ...],
                 message_types: tuple[str, ...], min_cost: float | None,
                 max_cost: float | None, sidechains: bool, split_mb: int | None,
                 compression: int | None, password: str | None) -> Json:
    filters: Json = {"includeSidechains": sidechains}
    if projects:
        filters["projectIds"] = list(projects)
    if sessions:
        filters["sessionIds"] = list(sessions)
    if models:
        filters["models"] = list(models)
    if message_types:
        filters["messageTypes"] = list(message_types)
    if since or until:
        filters["dateRange"] = {k: v for k, v in {"start": date_bound(since, False),
                                                  "end": date_bound(until, True)}.items() if v}
    if min_cost is not None or max_cost is not None:
        filters["costRange"] = {k: v for k, v in {"min": min_cost, "max": max_cost}.items()
                                if v is not None}
    options: Json = {}
    if split_mb is not None:
        options["splitSizeMb"] = split_mb
    if compression is not None:
        options["compression"] = {"level": compression}
    if password is not None:
        options["encryption"] = {"password": password}
    return {"format": export_format, "filters": filters, "options": options}


EXPORT_HELP = """Export your data: shows the estimate, starts the export, follows it live,
downloads the package and verifies it against its manifest.

\b
Examples:
  dataport export --format pdf --wait -o ~/exports/
  dataport export --format csv --since 2026-01-01 --project 66ad9b005f2b4a0012c0aaaa
  dataport export --format json --password-prompt --split-mb 50 --wait
  dataport export --format jsonl --no-wait --json     # start it and print the job (cron)

Without --wait/--no-wait it waits when the terminal is interactive."""


@click.command("export", help=EXPORT_HELP)
@click.option("--format", "export_format", type=click.Choice(FORMATS), default="json",
              show_default=True)
@click.option("--project", "projects", multiple=True, help="Project id (repeatable).")
@click.option("--session", "sessions", multiple=True, help="Session id (repeatable).")
@click.option("--since", help="Start date (2026-01-31 or an ISO timestamp with zone).")
@click.option("--until", help="End date (that day included).")
@click.option("--model", "models", multiple=True, help="Only messages of this model.")
@click.option("--message-type", "message_types", multiple=True,
              type=click.Choice(["user", "assistant", "summary", "system"]))
@click.option("--min-cost", type=float)
@click.option("--max-cost", type=float)
@click.option("--sidechains/--no-sidechains", default=True, help="Include sidechain messages.")
@click.option("--split-mb", type=click.IntRange(1, 500), help="No file in the zip larger.")
@click.option("--compression-level", "compression", type=click.IntRange(0, 9))
@click.option("--password-prompt", is_flag=True, help="Encrypt the package (AES-256); asks "
              "for the password, never stored.")
@click.option("--wait/--no-wait", default=None, help="Follow, download and verify.")
@click.option("-o", "--output", "target", type=click.Path(),
              help="File, or directory (existing, or ending in /), for the package (default: "
              "here).")
@click.option("--idempotency-key", help="The same key returns the same job (24 h).")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@json_option
def export(export_format: str, projects: tuple[str, ...], sessions: tuple[str, ...],
           since: str | None, until: str | None, models: tuple[str, ...],
           message_types: tuple[str, ...], min_cost: float | None, max_cost: float | None,
           sidechains: bool, split_mb: int | None, compression: int | None,
           password_prompt: bool, wait: bool | None, target: str | None,
           idempotency_key: str | None, timeout: float | None) -> None:
    st = state()
    out = st.output
    password = click.prompt("Package password", hide_input=True, confirmation_prompt=True,
                            err=True) if password_prompt else None
    body = request_body(export_format=export_format, projects=projects, sessions=sessions,
                        since=since, until=until, models=models, message_types=message_types,
                        min_cost=min_cost, max_cost=max_cost, sidechains=sidechains,
                        split_mb=split_mb, compression=compression, password=password)
    estimate = st.api.call("POST", "/exports/estimate", json=body)
    counts = estimate["counts"]
    out.say(f"Estimate: {counts['projects']} projects, {counts['sessions']} sessions, "
            f"{counts['messages']} messages -> about {size(estimate['packageBytes'])} of "
            f"{export_format}, about {estimate['durationSeconds']} s")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    started = st.api.call("POST", "/exports", json=body, headers=headers)
    job_id = started["jobId"]
    result: Json = {"jobId": job_id, "estimate": estimate}
    if wait is None:
        wait = out.interactive
    if not wait:
        out.say(f"Started export {job_id}. Follow it with `dataport watch {job_id}`, "
                f"fetch it with `dataport exports download {job_id}`.")
        out.document({**result, "status": started["status"]})
        return
    out.say(f"Started export {job_id}")
    final = follow_live(st, job_id, f"/exports/{job_id}", label="export", noun="export",
                        timeout=timeout)
    end_of_job(st, final, job_id, "export")
    result.update(_fetch(st, job_id, target, password))
    out.document({**result, "status": "succeeded"})


def end_of_job(st: State, final: Json, job_id: str, noun: str) -> None:
    status = final.get("status")
    if status == "succeeded":
        return
    error = final.get("error") or {}
    st.output.document({"jobId": job_id, "status": status, "error": error})
    raise CliError(ExitCode.FAILED, f"The {noun} {job_id} {status}: "
                                    f"{error.get('message', 'no reason given')}")


def _fetch(st: State, job_id: str, target: str | None, password: str | None) -> Json:
    """Download (byte bar) and verify; what was fetched, for --json."""
    job = st.api.call("GET", f"/exports/{job_id}")
    filename = (job.get("package") or {}).get("filename") or f"dataport-{job_id}.zip"
    path = target_path(target, filename)
    with st.output.byte_bar("download") as bar:
        st.api.download(f"/exports/{job_id}/download", path, bar.advance,
                        again=f"dataport exports download {job_id}")
    if password is None and job.get("encrypted") and sys.stdin.isatty() and not st.output.json:
        password = click.prompt("Package password (to verify it)", hide_input=True, err=True)
    return {"package": verified(st, path, password)}


def target_path(target: str | None, filename: str) -> Path:
    """-o as given: a file, or a directory (existing, or ending in /) to put `filename` in."""
    path = Path(target or ".")
    if path.is_dir() or target is None or target.endswith(("/", os.sep)):
        path.mkdir(parents=True, exist_ok=True)
        path = path / filename
    return path


def verified(st: State, path: Path, password: str | None) -> Json:
    """Verify `path`, say so, and fail (exit 1) when it does not verify."""
    try:
        result = verify_package(path, password)
    except PasswordRequired as error:
        raise CliError(ExitCode.FAILED, f"{path}: {error}") from None
    except ValueError as error:
        raise CliError(ExitCode.FAILED, f"{path}: {error}") from None
    summary = {"path": str(path), "bytes": path.stat().st_size, **result.summary()}
    if not result.ok:
        st.output.document(summary)
        raise CliError(ExitCode.FAILED, f"{path} does not match its manifest:\n  "
                       + "\n  ".join(result.problems))
    counts = summary["counts"]
    files = f"{summary['files']} file{'' if summary['files'] == 1 else 's'}"
    st.output.say(f"[green]Verified[/] {path} ({size(summary['bytes'])}): {files} "
                  f"matching the manifest's SHA-256; {counts.get('sessions', '?')} sessions, "
                  f"{counts.get('messages', '?')} messages")
    return summary


@click.group("exports", help="Your exports of the last 30 days.")
def exports() -> None:
    pass


@exports.command("list", help="Your exports, newest first.\n\n\b\nExample:\n  dataport exports "
                 "list --limit 5")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def list_exports(limit: int) -> None:
    st = state()
    page = st.api.call("GET", "/exports", params={"limit": limit})
    st.output.document(page)
    table = Table(Column("job", no_wrap=True, min_width=32), "status", "format", "created",
                  "progress", "package")
    for job in page["exports"]:
        package = job.get("package") or {}
        table.add_row(job["jobId"], job["status"], job["format"], job["createdAt"][:19],
                      f"{job['progress']['percentage']:.0f}%", size(package.get("bytes")))
    st.output.table(table)


@exports.command("show", help="One export: status, progress, counts, package.\n\n\b\n"
                 "Example:\n  dataport exports show 409c27ff10664c019ef7902b122771e7")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@json_option
def show_export(job_id: str) -> None:
    st = state()
    job = st.api.call("GET", f"/exports/{job_id}")
    st.output.document(job)
    progress, package = job["progress"], job.get("package") or {}
    st.output.table(kv_table(f"export {job_id}", [
        ("status", job["status"]), ("format", job["format"]),
        ("created", job["createdAt"]), ("progress", f"{progress['phase']} "
                                                     f"{progress['percentage']:.0f}%"),
        ("counts", job.get("counts") or "-"), ("package", package.get("filename", "-")),
        ("size", size(package.get("bytes"))), ("encrypted", job.get("encrypted", False)),
        ("error", (job.get("error") or {}).get("message", "-"))]))


@exports.command("cancel", help="Cancel a running export, or delete a finished one's "
                 "package.\n\n\b\nExample:\n"
                 "  dataport exports cancel 409c27ff10664c019ef7902b122771e7")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@json_option
def cancel_export(job_id: str) -> None:
    st = state()
    job = st.api.call("DELETE", f"/exports/{job_id}")
    st.output.document(job)
    st.output.say(f"Export {job_id}: {job['status']}")


@exports.command("download", help="Download a finished export and verify it.\n\n\b\nExample:\n"
                 "  dataport exports download 409c27ff10664c019ef7902b122771e7 -o ~/exports/")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@click.option("-o", "--output", "target", type=click.Path(),
              help="File, or directory (existing, or ending in /).")
@click.option("--password-prompt", is_flag=True, help="The package's password, to verify it.")
@json_option
def download_export(job_id: str, target: str | None, password_prompt: bool) -> None:
    st = state()
    password = click.prompt("Package password", hide_input=True, err=True) \
        if password_prompt else None
    st.output.document({"jobId": job_id, **_fetch(st, job_id, target, password)})
