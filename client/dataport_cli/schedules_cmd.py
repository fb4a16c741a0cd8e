"""`dataport schedules create|list|show|pause|resume|delete` (the API: docs/backups.md,
"Schedules and retention")."""

from __future__ import annotations

import click
from rich.table import Column, Table

from dataport_cli.api import Json
from dataport_cli.backups_cmd import backup_filters
from dataport_cli.context import State, json_option, state
from dataport_cli.exit_codes import CliError, ExitCode
from dataport_cli.exports_cmd import id_param
from dataport_cli.ui import kv_table

CREATE_HELP = """Schedule backups: a cron expression read in a time zone, or a rate; runs are at
least an hour apart. Keeps the newest --keep-last and/or those younger than --keep-days.

\b
Examples:
  dataport schedules create --name nightly --cron "30 2 * * *" --timezone Europe/Berlin \\
      --type incremental --full-every 7 --keep-last 14
  dataport schedules create --name twice-a-day --rate "12 hours" --keep-days 30 --json
  dataport schedules pause <scheduleId>"""


@click.group("schedules", help="Your backup schedules: create, list, show, pause, resume, "
             "delete.")
def schedules() -> None:
    pass


@schedules.command("create", help=CREATE_HELP)
@click.option("--name", required=True, help="3-100 letters, digits, spaces, - or _.")
@click.option("--description")
@click.option("--cron", help="Five fields: minute hour day-of-month month day-of-week.")
@click.option("--rate", help="N minutes|hours|days, e.g. \"12 hours\".")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone the cron is "
              "read in.")
@click.option("--type", "backup_type", type=click.Choice(["full", "incremental"]),
              default="full", show_default=True)
@click.option("--full-every", type=click.IntRange(2, 365), help="Incremental: runs per chain.")
@click.option("--scope", type=click.Choice(["user", "instance"]), default="user",
              show_default=True)
@click.option("--project", "projects", multiple=True, help="Only this project (repeatable).")
@click.option("--session", "sessions", multiple=True, help="Only this session (repeatable).")
@click.option("--keep-last", type=click.IntRange(1, 1000), help="Keep the newest N backups.")
@click.option("--keep-days", type=click.IntRange(1, 3650), help="Keep those younger than N "
              "days.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.option("--password-prompt", is_flag=True, help="Encrypt every run's backup; asks for the "
              "password (kept sealed by the service for the runs, never shown again).")
@json_option
def create_schedule(name: str, description: str | None, cron: str | None, rate: str | None,
                    timezone: str, backup_type: str, full_every: int | None, scope: str,
                    projects: tuple[str, ...], sessions: tuple[str, ...],
                    keep_last: int | None, keep_days: int | None, paused: bool,
                    password_prompt: bool) -> None:
    st = state()
    if (cron is None) == (rate is None):
        raise CliError(ExitCode.USAGE, "Give exactly one of --cron and --rate.")
    if keep_last is None and keep_days is None:
        raise CliError(ExitCode.USAGE, "Give --keep-last and/or --keep-days: how many backups "
                                       "the schedule keeps.")
    body: Json = {"name": name, "type": backup_type, "scope": scope, "paused": paused,
                  "schedule": {"expression": f"cron({cron})" if cron else f"rate({rate})",
                               "timezone": timezone},
                  "retention": {k: v for k, v in {"keepLast": keep_last,
                                                  "keepDays": keep_days}.items()
                                if v is not None}}
    optional = {"description": description, "fullEvery": full_every,
                "password": click.prompt("Backup password", hide_input=True,
                                         confirmation_prompt=True, err=True)
                if password_prompt else None,
                "filters": backup_filters(projects=projects, sessions=sessions, since=None,
                                          until=None, min_messages=None, max_messages=None)}
    body.update({k: v for k, v in optional.items() if v is not None})
    schedule = st.api.call("POST", "/backup-schedules", json=body)
    st.output.document(schedule)
    _show(st, schedule)


@schedules.command("list", help="Your schedules, newest first, with their next run.")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def list_schedules(limit: int) -> None:
    st = state()
    page = st.api.call("GET", "/backup-schedules", params={"limit": limit})
    st.output.document(page)
    table = Table(Column("schedule", no_wrap=True, min_width=32), "name", "when", "type",
                  "paused", "next run")
    for schedule in page["schedules"]:
        table.add_row(schedule["scheduleId"], schedule["name"], _when(schedule),
                      schedule["type"], str(schedule["paused"]),
                      (schedule.get("nextRunAt") or "-")[:19])
    st.output.table(table)


@schedules.command("show", help="One schedule and its last runs.\n\n\b\nExample:\n"
                   "  dataport schedules show <scheduleId>")
@click.argument("schedule_id", callback=id_param)
@json_option
def show_schedule(schedule_id: str) -> None:
    st = state()
    schedule = st.api.call("GET", f"/backup-schedules/{schedule_id}")
    st.output.document(schedule)
    _show(st, schedule)


def _pause(schedule_id: str, paused: bool) -> None:
    st = state()
    schedule = st.api.call("PATCH", f"/backup-schedules/{schedule_id}", json={"paused": paused})
    st.output.document(schedule)
    st.output.say(f"Schedule {schedule_id} {'paused' if paused else 'resumed'}; next run: "
                  f"{schedule.get('nextRunAt') or '-'}")


@schedules.command("pause", help="No runs until resumed.\n\n\b\nExample:\n"
                   "  dataport schedules pause <scheduleId>")
@click.argument("schedule_id", callback=id_param)
@json_option
def pause_schedule(schedule_id: str) -> None:
    _pause(schedule_id, True)


@schedules.command("resume", help="Runs again from the next slot after now (runs missed "
                   "while paused are not made up).\n\n\b\nExample:\n"
                   "  dataport schedules resume <scheduleId>")
@click.argument("schedule_id", callback=id_param)
@json_option
def resume_schedule(schedule_id: str) -> None:
    _pause(schedule_id, False)


@schedules.command("delete", help="Remove a schedule (not its backups).\n\n\b\nExample:\n"
                   "  dataport schedules delete <scheduleId>")
@click.argument("schedule_id", callback=id_param)
@json_option
def delete_schedule(schedule_id: str) -> None:
    st = state()
    st.api.call("DELETE", f"/backup-schedules/{schedule_id}")
    st.output.document({"scheduleId": schedule_id, "status": "deleted"})
    st.output.say(f"Schedule {schedule_id} deleted (its backups stay).")


def _when(schedule: Json) -> str:
    spec = schedule["schedule"]
    return f"{spec['expression']} {spec.get('timezone', 'UTC')}"


def _show(st: State, schedule: Json) -> None:
    retention = schedule.get("retention") or {}
    st.output.table(kv_table(f"schedule {schedule['scheduleId']}", [
        ("name", schedule["name"]), ("when", _when(schedule)), ("type", schedule["type"]),
        ("full every", schedule.get("fullEvery") or "-"), ("scope", schedule["scope"]),
        ("keeps", ", ".join(f"{k} {v}" for k, v in retention.items() if v) or "-"),
        ("paused", schedule["paused"]), ("encrypted", schedule.get("encrypted", False)),
        ("next run", schedule.get("nextRunAt") or "-")]))
    runs = schedule.get("lastRuns") or []
    if runs:
        table = Table("due", "outcome", "backup", title="Last runs", title_justify="left")
        for run in runs[:10]:
            table.add_row(run["dueAt"][:19], run["outcome"], run.get("backupId") or "-")
        st.output.table(table)
