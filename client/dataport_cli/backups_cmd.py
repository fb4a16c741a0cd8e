"""`dataport backups create|list|show|verify|download|delete|restore` and
`dataport restores list|show|rollback|cancel` (the API: docs/backups.md)."""

from __future__ import annotations

import hashlib
import time

import click
from rich.table import Column, Table

from dataport_cli.api import Json
from dataport_cli.context import State, confirm_or_stop, json_option, state
from dataport_cli.exit_codes import CliError, ExitCode
from dataport_cli.exports_cmd import date_bound, id_param, target_path
from dataport_cli.follow import TERMINAL, follow, open_socket
from dataport_cli.imports_cmd import show_outcome
from dataport_cli.live import follow_live, roll_back, undone
from dataport_cli.ui import kv_table, size

#: a backup's record ends in one of these (its job's events end in TERMINAL)
BACKUP_ENDS = TERMINAL | {"completed", "corrupted", "expired"}
MODES = ["full", "selective", "merge"]
CONFLICTS = ["skip", "overwrite", "rename", "merge"]


def _password(prompt: bool, confirm: bool = False) -> str | None:
    return click.prompt("Backup password", hide_input=True, confirmation_prompt=confirm,
                        err=True) if prompt else None


def backup_filters(*, projects: tuple[str, ...], sessions: tuple[str, ...], since: str | None,
                   until: str | None, min_messages: int | None,
                   max_messages: int | None) -> Json | None:
    """A selective backup's `filters` (docs/backups.md), or None when no flag narrows it."""
    filters: Json = {}
    if projects:
        filters["projectIds"] = list(projects)
    if sessions:
        filters["sessionIds"] = list(sessions)
    if since or until:
        filters["dateRange"] = {k: v for k, v in {"start": date_bound(since, False),
                                                  "end": date_bound(until, True)}.items() if v}
    if min_messages is not None or max_messages is not None:
        filters["messageCount"] = {k: v for k, v in {"min": min_messages,
                                                     "max": max_messages}.items()
                                   if v is not None}
    return filters or None


CREATE_HELP = """Back up your data: starts the backup and, with --wait, follows it live.

\b
Examples:
  dataport backups create --name nightly --wait
  dataport backups create --name q1 --type selective --since 2026-01-01 --until 2026-03-31
  dataport backups create --name inc-1 --type incremental --parent <backupId> --wait
  dataport backups create --name sealed --password-prompt --wait --json

Without --wait/--no-wait it waits when the terminal is interactive."""


@click.group("backups", help="Your backups: create, list, show, verify, download, delete, "
             "restore.")
def backups() -> None:
    pass


@backups.command("create", help=CREATE_HELP)
@click.option("--name", required=True, help="3-100 letters, digits, spaces, - or _.")
@click.option("--description")
@click.option("--type", "backup_type", type=click.Choice(["full", "selective", "incremental"]),
              default="full", show_default=True)
@click.option("--parent", "parent_id", help="The backup an incremental one follows.")
@click.option("--scope", type=click.Choice(["user", "instance"]), default="user",
              show_default=True, help="instance: everyone's data (administrators).")
@click.option("--project", "projects", multiple=True, help="Project id (repeatable; selective).")
@click.option("--session", "sessions", multiple=True, help="Session id (repeatable; selective).")
@click.option("--since", help="Sessions active from this date (selective).")
@click.option("--until", help="Sessions active until this date, included (selective).")
@click.option("--min-messages", type=click.IntRange(0), help="Selective: at least N messages.")
@click.option("--max-messages", type=click.IntRange(0), help="Selective: at most N messages.")
@click.option("--compression-level", "compression", type=click.IntRange(1, 22))
@click.option("--retention-days", type=click.IntRange(1, 3650))
@click.option("--password-prompt", is_flag=True, help="Encrypt it; asks for the password, "
              "never stored.")
@click.option("--wait/--no-wait", default=None, help="Follow it until it is made.")
@click.option("--idempotency-key", help="The same key returns the same backup (24 h).")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@json_option
def create_backup(name: str, description: str | None, backup_type: str, parent_id: str | None,
                  scope: str, projects: tuple[str, ...], sessions: tuple[str, ...],
                  since: str | None, until: str | None, min_messages: int | None,
                  max_messages: int | None, compression: int | None,
                  retention_days: int | None, password_prompt: bool, wait: bool | None,
                  idempotency_key: str | None, timeout: float | None) -> None:
    st = state()
    body: Json = {"name": name, "type": backup_type, "scope": scope}
    optional = {"description": description, "parentId": parent_id,
                "compressionLevel": compression, "retentionDays": retention_days,
                "filters": backup_filters(projects=projects, sessions=sessions, since=since,
                                          until=until, min_messages=min_messages,
                                          max_messages=max_messages),
                "password": _password(password_prompt, confirm=True)}
    body.update({k: v for k, v in optional.items() if v is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    started = st.api.call("POST", "/backups", json=body, headers=headers)
    backup_id = started["backupId"]
    if wait is None:
        wait = st.output.interactive
    if not wait:
        st.output.say(f"Started backup {backup_id}. Follow it with `dataport watch "
                      f"{backup_id}` or `dataport backups show {backup_id}`.")
        st.output.document(started)
        return
    st.output.say(f"Started backup {backup_id}")
    follow_live(st, backup_id, f"/backups/{backup_id}", label="backup", noun="backup",
                ends=BACKUP_ENDS, timeout=timeout)
    backup = st.api.call("GET", f"/backups/{backup_id}")  # an event holds no sizes or sha256
    st.output.document(backup)
    if backup["status"] != "completed":
        error = backup.get("error") or {}
        raise CliError(ExitCode.FAILED, f"The backup {backup_id} {backup['status']}: "
                                        f"{error.get('message', 'no reason given')}")
    _show(st, backup)


@backups.command("list", help="Your backups, newest first.\n\n\b\nExamples:\n"
                 "  dataport backups list\n  dataport backups list --scope instance --json")
@click.option("--scope", type=click.Choice(["user", "instance"]), default="user",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def list_backups(scope: str, limit: int) -> None:
    st = state()
    page = st.api.call("GET", "/backups", params={"scope": scope, "limit": limit})
    st.output.document(page)
    table = Table(Column("backup", no_wrap=True, min_width=32), "name", "type", "status",
                  "created", "size")
    for backup in page["backups"]:
        table.add_row(backup["backupId"], backup["name"], backup["type"], backup["status"],
                      backup["createdAt"][:19], size((backup.get("sizes") or {}).get("stored")))
    st.output.table(table)


@backups.command("show", help="One backup: status, sizes, counts, checksum.\n\n\b\nExample:\n"
                 "  dataport backups show 409c27ff10664c019ef7902b122771e7")
@click.argument("backup_id", callback=id_param)
@json_option
def show_backup(backup_id: str) -> None:
    st = state()
    backup = st.api.call("GET", f"/backups/{backup_id}")
    st.output.document(backup)
    _show(st, backup)


def _show(st: State, backup: Json) -> None:
    sizes, counts = backup.get("sizes") or {}, backup.get("counts") or {}
    st.output.table(kv_table(f"backup {backup['backupId']}", [
        ("name", backup["name"]), ("type", backup["type"]), ("scope", backup["scope"]),
        ("status", backup["status"]), ("created", backup["createdAt"]),
        ("completed", backup.get("completedAt") or "-"),
        ("expires", backup.get("expiresAt") or "-"), ("parent", backup.get("parentId") or "-"),
        ("counts", ", ".join(f"{v} {k}" for k, v in counts.items()) or "-"),
        ("size", size(sizes.get("stored"))), ("sha256", backup.get("sha256") or "-"),
        ("encrypted", backup.get("encrypted", False)),
        ("verified", backup.get("verifiedAt") or "-"),
        ("error", (backup.get("error") or {}).get("message", "-"))]))


@backups.command("verify", help="Re-read a backup on the server: its checksum and every "
                 "member. A large backup (or --background) is verified by a job: the command "
                 "waits for it (--no-wait: says its job and returns).\n\n\b\nExamples:\n"
                 "  dataport backups verify <backupId>\n"
                 "  dataport backups verify <backupId> --password-prompt   # encrypted\n"
                 "  dataport backups verify <backupId> --background --no-wait\n"
                 "  dataport backups verify <backupId> --cancel   # stop a running job")
@click.argument("backup_id", callback=id_param)
@click.option("--cancel", is_flag=True, help="Cancel the backup's running verification job "
              "(the backup's status stays as it was).")
@click.option("--password-prompt", is_flag=True, help="An encrypted backup's password.")
@click.option("--background", is_flag=True, help="Run it as a job whatever the size.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for a verification job to end.")
@click.option("--timeout", type=float, help="Seconds to wait for a verification job.")
@json_option
def verify_backup(backup_id: str, cancel: bool, password_prompt: bool, background: bool,
                  wait: bool, timeout: float | None) -> None:
    st = state()
    if cancel:
        backup = st.api.call("DELETE", f"/backups/{backup_id}/verify")
        st.output.document(backup)
        st.output.say(f"Verification of backup {backup_id} cancelled; the backup stays "
                      f"{backup['status']}.")
        return
    password = _password(password_prompt)
    body: Json = {"background": True} if background else {}
    if password:
        body["password"] = password
    report = st.api.call("POST", f"/backups/{backup_id}/verify", json=body or None)
    if "verification" in report:  # 202: a job verifies it
        job_id = report["jobId"]
        if not wait:
            st.output.document(report)
            st.output.say(f"Verifying backup {backup_id} in the background (job {job_id}); "
                          f"follow it: dataport watch {job_id}")
            return
        report = _verification_of(st, backup_id, job_id, timeout)
    st.output.document(report)
    if not report["ok"]:
        raise CliError(ExitCode.FAILED, f"Backup {backup_id} is damaged: "
                                        f"{report.get('member') or 'the object'}: "
                                        f"{report.get('problem')}")
    st.output.say(f"Backup {backup_id} verified: {report['members']} members, "
                  f"{report['records']} records, sha256 {report['sha256']}")


def _verification_of(st: State, backup_id: str, job_id: str, timeout: float | None) -> Json:
    """Wait for the verification job (its live bar over the WebSocket, else the backup's
    `verification` polled), then its result in the synchronous report's shape."""
    socket = open_socket(st.settings.ws_url, st.token)
    if socket is not None:  # live progress; without it, the record alone is polled below
        try:
            with st.output.job_bar("verify") as bar:
                # the REST view (the backup) never ends the job's events: its own events do
                follow(st.api, socket, job_id, f"/backups/{backup_id}", until=set(),
                       on_update=bar.update, timeout=timeout or 3600,
                       ends=frozenset({"succeeded", "failed", "cancelled"}))
        finally:
            socket.close()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:  # the record is written before the job's end: normally one read
        backup = st.api.call("GET", f"/backups/{backup_id}")
        result: Json = backup.get("verification") or {}
        if result.get("jobId") == job_id and result.get("status") != "running":
            break
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(ExitCode.FAILED, f"The verification {job_id} did not end in time; it "
                                            f"goes on: dataport backups show {backup_id}")
        time.sleep(1)
    if result["status"] == "cancelled":
        raise CliError(ExitCode.FAILED, f"The verification of {backup_id} was cancelled; the "
                                        f"backup stays {backup['status']}.")
    if result["status"] == "failed":
        raise CliError(ExitCode.FAILED, f"The verification of {backup_id} failed: "
                       f"{(result.get('error') or {}).get('message', 'no reason given')}")
    return {"backupId": backup_id, "jobId": job_id, "status": backup["status"],
            "ok": result["ok"], "sha256": result.get("sha256"),
            "members": result.get("members", 0), "records": result.get("records", 0),
            "member": result.get("member"), "problem": result.get("problem"),
            "verifiedAt": backup.get("verifiedAt")}


@backups.command("download", help="Download a completed backup (its SHA-256 checked against "
                 "the catalog's).\n\n\b\nExample:\n  dataport backups download <backupId> -o "
                 "~/backups/")
@click.argument("backup_id", callback=id_param)
@click.option("-o", "--output", "target", type=click.Path(),
              help="File, or directory (existing, or ending in /).")
@json_option
def download_backup(backup_id: str, target: str | None) -> None:
    st = state()
    backup = st.api.call("GET", f"/backups/{backup_id}")
    path = target_path(target, f"dataport-backup-{backup_id}.zip")
    digest = hashlib.sha256()  # as it streams: the file is not read twice
    with st.output.byte_bar("download") as bar:
        st.api.download(f"/backups/{backup_id}/download", path, bar.advance,
                        again=f"dataport backups download {backup_id}", on_chunk=digest.update)
    result: Json = {"backupId": backup_id, "path": str(path), "bytes": path.stat().st_size,
              "sha256": digest.hexdigest(), "ok": digest.hexdigest() == backup.get("sha256")}
    st.output.document(result)
    if not result["ok"]:
        raise CliError(ExitCode.FAILED, f"{path}: its SHA-256 is not the catalog's "
                                        f"({backup.get('sha256')}); download it again.")
    st.output.say(f"Backup {backup_id}: {path} ({size(result['bytes'])}, sha256 verified)")


@backups.command("delete", help="Delete a backup, or cancel one being made.\n\n\b\nExample:\n"
                 "  dataport backups delete <backupId>")
@click.argument("backup_id", callback=id_param)
@json_option
def delete_backup(backup_id: str) -> None:
    st = state()
    cancelled = st.api.call("DELETE", f"/backups/{backup_id}")  # 204 (deleted): empty
    status = cancelled.get("status", "deleted") if cancelled else "deleted"
    st.output.document({"backupId": backup_id, "status": status})
    st.output.say(f"Backup {backup_id}: {status}")


RESTORE_HELP = """Restore a backup into your account: follows the restore live and prints what
it did (with --dry-run: what it would do, nothing written).

\b
Examples:
  dataport backups restore <backupId> --dry-run
  dataport backups restore <backupId> --mode merge --conflicts overwrite --yes
  dataport backups restore <backupId> --mode selective --project /home/me/app --yes
  dataport backups restore <instanceBackupId> --target instance --mode full   # admins
  dataport restores rollback <restoreId>            # undo it"""


@backups.command("restore", help=RESTORE_HELP)
@click.argument("backup_id", callback=id_param)
@click.option("--mode", type=click.Choice(MODES), default="merge", show_default=True,
              help="full also removes what the backup lacks.")
@click.option("--conflicts", type=click.Choice(CONFLICTS), default="overwrite",
              show_default=True, help="For sessions you already have.")
@click.option("--project", "projects", multiple=True, help="Selective: a project path or id.")
@click.option("--session", "sessions", multiple=True, help="Selective: a session id.")
@click.option("--target", default="self", show_default=True,
              help="Administrators: another user's id, or instance (an instance backup: "
                   "every user's data under its owner).")
@click.option("--dry-run", is_flag=True, help="Say what would happen; write nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before writing.")
@click.option("--password-prompt", is_flag=True, help="An encrypted backup's password.")
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--idempotency-key")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@json_option
def restore_backup(backup_id: str, mode: str, conflicts: str, projects: tuple[str, ...],
                   sessions: tuple[str, ...], target: str, dry_run: bool, yes: bool,
                   password_prompt: bool, wait: bool, idempotency_key: str | None,
                   timeout: float | None) -> None:
    st = state()
    into = "your account" if target == "self" else (
        "the instance" if target == "instance" else f"account {target}")
    if not dry_run and not yes:
        confirm_or_stop(st, f"Restore backup {backup_id} ({mode}, conflicts: {conflicts}) "
                            f"into {into}?")
    body: Json = {"backupId": backup_id, "mode": mode, "conflicts": conflicts,
                  "dryRun": dry_run, "target": target}
    if projects or sessions:
        body["selections"] = {"projects": list(projects), "sessions": list(sessions)}
    password = _password(password_prompt)
    if password:
        body["password"] = password
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    job_id = st.api.call("POST", "/restores", json=body, headers=headers)["jobId"]
    if not wait:
        st.output.say(f"Started restore {job_id}: `dataport restores show {job_id}`.")
        st.output.document({"jobId": job_id, "status": "pending"})
        return
    follow_live(st, job_id, f"/restores/{job_id}", label="dry run" if dry_run else "restore",
                noun="restore", timeout=timeout)  # Ctrl-C: cancel (undone) or leave it
    job = st.api.call("GET", f"/restores/{job_id}")  # an event holds no outcome
    st.output.document(job)
    end_of_restore(job)
    if dry_run:
        show_outcome(st, job.get("dryRun") or {}, "Dry run (nothing written)")
        st.output.say(f"Restore it: `dataport backups restore {backup_id} --mode {mode} "
                      f"--conflicts {conflicts} --yes`")
        return
    show_outcome(st, job.get("outcome") or {}, "Restored")
    st.output.say(f"Undo it with `dataport restores rollback {job_id}`")


def end_of_restore(job: Json) -> None:
    if job["status"] == "succeeded":
        return
    error = job.get("error") or {}
    raise CliError(ExitCode.FAILED, f"Restore {job['jobId']} {job['status']}: "
                                    f"{error.get('message', 'no reason given')}")


@click.group("restores", help="Your restores of the last 30 days.")
def restores() -> None:
    pass


@restores.command("list", help="Your restores, newest first.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def list_restores(limit: int) -> None:
    st = state()
    page = st.api.call("GET", "/restores", params={"limit": limit})
    st.output.document(page)
    table = Table(Column("restore", no_wrap=True, min_width=32), "status", "backup", "mode",
                  "dry run", "created")
    for job in page["restores"]:
        request = job.get("request") or {}
        table.add_row(job["jobId"], job["status"], request.get("backupId") or "upload",
                      str(request.get("mode", "")), str(bool(request.get("dryRun"))),
                      job["createdAt"][:19])
    st.output.table(table)


@restores.command("show", help="One restore: status, chain, what it did.\n\n\b\nExample:\n"
                  "  dataport restores show <restoreId>")
@click.argument("job_id", callback=id_param)
@json_option
def show_restore(job_id: str) -> None:
    st = state()
    job = st.api.call("GET", f"/restores/{job_id}")
    st.output.document(job)
    st.output.table(kv_table(f"restore {job_id}", [
        ("status", job["status"]), ("backup", (job.get("request") or {}).get("backupId", "-")),
        ("chain", ", ".join(job.get("chain") or []) or "-"),
        ("progress", f"{job['progress']['phase']} {job['progress']['percentage']:.0f}%"),
        ("error", (job.get("error") or {}).get("message", "-"))]))
    outcome = job.get("outcome") or {}
    if job.get("dryRun") or outcome:
        # a dry run's outcome is its dryRun: what it would have done
        show_outcome(st, outcome if outcome and not outcome.get("dryRun") else job["dryRun"],
                     "Dry run (nothing written)" if outcome.get("dryRun") or not outcome
                     else "Restored")


@restores.command("rollback", help="Undo a restore: your data as it was before it.\n\n\b\n"
                  "Example:\n  dataport restores rollback <restoreId>")
@click.argument("job_id", callback=id_param)
@click.option("--timeout", type=float)
@json_option
def rollback_restore(job_id: str, timeout: float | None) -> None:
    roll_back(state(), "restore", job_id, timeout)


@restores.command("cancel", help="Stop a restore that has not finished and undo what it "
                  "wrote: your data as it was before it (a finished one: roll it back).\n\n"
                  "\b\nExample:\n  dataport restores cancel <restoreId>")
@click.argument("job_id", callback=id_param)
@click.option("--timeout", type=float)
@json_option
def cancel_restore(job_id: str, timeout: float | None) -> None:
    st = state()
    path = f"/restores/{job_id}"
    st.api.call("DELETE", path)  # cancelling: it stops, then undoes what it wrote
    undone(st, job_id, path, label="cancel", ends_as="cancelled", timeout=timeout,
           said=f"Restore {job_id} cancelled")
