"""Following a job on the terminal: the socket, the live bar, and Ctrl-C's question."""

from __future__ import annotations

from dataport_cli import interrupt
from dataport_cli.api import Json
from dataport_cli.context import State
from dataport_cli.exit_codes import CliError, ExitCode
from dataport_cli.follow import TERMINAL, follow, open_socket


def follow_live(st: State, job_id: str, path: str, *, label: str, noun: str,
                until: frozenset[str] = frozenset(), ends: frozenset[str] = TERMINAL,
                timeout: float | None = None, cancellable: bool = True) -> Json:
    """The job's last event (or view) once its status is in `until` or `ends`; Ctrl-C asks
    whether to cancel it or leave it running (interrupt.ask; not `cancellable`: left running)."""
    socket = open_socket(st.settings.ws_url, st.token)
    try:
        with st.output.job_bar(label) as bar:
            return follow(st.api, socket, job_id, path, until=set(until), on_update=bar.update,
                          timeout=timeout, ends=ends)
    except KeyboardInterrupt:
        interrupt.ask(st, noun, path, job_id, cancellable=cancellable)
    finally:
        if socket is not None:
            socket.close()


def roll_back(st: State, kind: str, job_id: str, timeout: float | None) -> None:
    """`dataport imports|restores rollback ID`: start it, follow it, say how it ended."""
    path = f"/{kind}s/{job_id}"
    st.api.call("POST", f"{path}/rollback")
    undone(st, job_id, path, label="rollback", ends_as="rolled_back", timeout=timeout,
           said=f"{kind.capitalize()} {job_id} rolled back")


def undone(st: State, job_id: str, path: str, *, label: str, ends_as: str,
           timeout: float | None, said: str) -> None:
    """Follow a rollback or a restore's cancel (both put the target back) until it ends; fail
    unless it ended `ends_as`, else say `said` and that the data is as it was."""
    last = follow_live(st, job_id, path, label=label, noun=label,
                       ends=frozenset({ends_as, "failed"}), timeout=timeout, cancellable=False)
    st.output.document({"jobId": job_id, "status": last["status"], "error": last.get("error")})
    if last["status"] != ends_as:
        raise CliError(ExitCode.FAILED, f"{label.capitalize()} of {job_id} {last['status']}: "
                       f"{(last.get('error') or {}).get('message', '')}")
    st.output.say(f"{said}: your data is as it was before it.")
