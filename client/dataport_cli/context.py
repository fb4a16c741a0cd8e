"""What every command gets: the resolved settings, the output mode, and the API client."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import click

from dataport_cli.api import Api
from dataport_cli.config import Settings
from dataport_cli.exit_codes import CliError, ExitCode
from dataport_cli.ui import Output

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    settings: Settings
    output: Output

    @cached_property
    def api(self) -> Api:
        return Api(self.settings)

    @property
    def token(self) -> str:
        return self.settings.require_api()[1]


def state() -> State:
    found = click.get_current_context().find_object(State)
    if found is None:  # pragma: no cover - the group always sets it
        raise RuntimeError("no dataport context")
    return found


def confirm_or_stop(st: State, question: str) -> None:
    """Ask before a write that needs a yes; without a terminal to ask on (or in --json mode)
    nothing is done and the command exits 2 naming --yes."""
    if st.output.json or not sys.stdin.isatty():
        raise CliError(ExitCode.USAGE, "Not executed: pass --yes to go ahead without a "
                                       "question.")
    if not click.confirm(question, default=False, err=True):
        raise CliError(ExitCode.USAGE, "Not executed.")


def _json_flag(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        found = ctx.find_object(State)
        if found is not None:
            found.output.json = True


def json_option(command: F) -> F:
    """`--json` on the command itself too (`dataport exports list --json`)."""
    return click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True,
                        callback=_json_flag,
                        help="Machine-readable output only (one JSON document, no bars).",
                        )(command)
