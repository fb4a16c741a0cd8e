"""The `dataport` command: the group, its global options, login, watch, verify, and the one
place errors become exit codes (exit_codes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dataport_cli import __version__
from dataport_cli.backups_cmd import BACKUP_ENDS, backups, restores
from dataport_cli.config import Settings, config_path, resolve, save
from dataport_cli.context import State, json_option, state
from dataport_cli.exit_codes import HELP, CliError, ExitCode
from dataport_cli.exports_cmd import export, exports, job_id_arg, verified
from dataport_cli.imports_cmd import import_file, imports
from dataport_cli.keys_cmd import keys
from dataport_cli.live import follow_live
from dataport_cli.schedules_cmd import schedules
from dataport_cli.ui import Output

GROUP_HELP = f"""Export, import, back up, restore, watch and verify your ClaudeLens data with
dataport.

\b
The API and the credential come from flags, else DATAPORT_API_URL, DATAPORT_WS_URL and
DATAPORT_TOKEN (a JWT or an API key), else the file `dataport login` writes
({config_path()}, mode 0600). The credential is never printed.

\b
{HELP}"""


@click.group(help=GROUP_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dataport")
@click.option("--api-url", help="The REST API, e.g. https://<api>.execute-api.<region>."
              "amazonaws.com/v1 [DATAPORT_API_URL]")
@click.option("--ws-url", help="The WebSocket API for live progress [DATAPORT_WS_URL]")
@click.option("--token", help="A JWT or an API key; prefer DATAPORT_TOKEN (flags show in ps).")
@click.option("--json", "json_", is_flag=True, help="Machine-readable output only.")
@click.pass_context
def cli(ctx: click.Context, api_url: str | None, ws_url: str | None, token: str | None,
        json_: bool) -> None:
    ctx.obj = State(resolve(api_url, ws_url, token), Output(json=json_))


cli.add_command(export)
cli.add_command(exports)
cli.add_command(import_file)
cli.add_command(imports)
cli.add_command(keys)
cli.add_command(backups)
cli.add_command(restores)
cli.add_command(schedules)


@cli.command(help="Store the API URLs and your credential for the next commands (a file only "
             "you can read).\n\n\b\nExamples:\n  dataport login --api-url https://abc.execute-api."
             "eu-west-1.amazonaws.com/v1 \\\n      --ws-url wss://def.execute-api.eu-west-1."
             "amazonaws.com/v1\n  echo \"$KEY\" | dataport login --api-url URL --token-stdin")
@click.option("--api-url", help="The REST API (else the global --api-url or DATAPORT_API_URL).")
@click.option("--ws-url", help="The WebSocket API, for live progress.")
@click.option("--token-stdin", is_flag=True, help="Read the credential from stdin.")
@json_option
def login(api_url: str | None, ws_url: str | None, token_stdin: bool) -> None:
    st = state()
    token = st.settings.token
    if token_stdin:
        token = sys.stdin.readline().strip()
    elif not token:
        token = click.prompt("Token or API key", hide_input=True, err=True).strip()
    settings = Settings(api_url=api_url or st.settings.api_url,
                        ws_url=ws_url or st.settings.ws_url, token=token)
    st.settings = settings
    st.api.call("GET", "/exports", params={"limit": 1})  # a refused credential: exit 3, no file
    path = save(settings)
    st.output.document({"apiUrl": settings.api_url, "wsUrl": settings.ws_url,
                        "config": str(path)})
    st.output.say(f"Logged in to {settings.api_url}; saved in {path} (mode 0600).")


@cli.command(help="Follow any job live until it ends.\n\n\b\nExample:\n"
             "  dataport watch 409c27ff10664c019ef7902b122771e7")
@click.argument("job_id", callback=lambda _c, _p, v: job_id_arg(v))
@click.option("--timeout", type=float)
@json_option
def watch(job_id: str, timeout: float | None) -> None:
    st = state()
    path = _job_path(st, job_id)
    last = follow_live(st, job_id, path, label=path.split("/")[1].rstrip("s"), noun="job",
                       ends=BACKUP_ENDS, timeout=timeout,
                       cancellable=not path.startswith("/restores/"))
    job = st.api.call("GET", path)
    st.output.document(job)
    status = last.get("status")
    if status not in ("succeeded", "rolled_back", "completed"):
        message = ((last.get("error") or job.get("error") or {}).get("message")
                   or "no reason given")
        raise CliError(ExitCode.FAILED, f"Job {job_id} {status}: {message}")
    st.output.say(f"Job {job_id} {status}.")


def _job_path(st: State, job_id: str) -> str:
    """Which kind of job this is: the REST view that answers."""
    for kind in ("exports", "imports", "restores", "backups"):
        try:
            st.api.call("GET", f"/{kind}/{job_id}")
        except CliError as error:
            if error.code is ExitCode.NOT_FOUND:
                continue
            raise
        return f"/{kind}/{job_id}"
    raise CliError(ExitCode.NOT_FOUND, f"No job {job_id} was found for this account.")


@cli.command(help="Check a package against its manifest, offline.\n\n\b\nExamples:\n"
             "  dataport verify dataport-json-20261205-080003-409c27ff.zip\n"
             "  dataport verify encrypted.zip --password-prompt")
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--password-prompt", is_flag=True, help="Asks for an encrypted package's "
              "password.")
@json_option
def verify(package: Path, password_prompt: bool) -> None:
    st = state()
    password = click.prompt("Package password", hide_input=True, err=True) \
        if password_prompt else None
    st.output.document(verified(st, package, password))


def main(argv: list[str] | None = None) -> int:
    """Run the command; every outcome is an exit code (exit_codes.py), every error a message
    on stderr."""
    try:
        cli.main(args=argv, prog_name="dataport", standalone_mode=False)
    except CliError as error:
        click.echo(f"dataport: {error.message}", err=True)
        return int(error.code)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as error:
        error.show()
        return ExitCode.USAGE if isinstance(error, click.UsageError) else ExitCode.FAILED
    except (click.Abort, KeyboardInterrupt):
        click.echo("\ndataport: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.DONE)
