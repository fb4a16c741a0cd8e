"""The CLI in a pseudo-terminal (pexpect), as a person sees it: the export's live bar reaches
100 %, and Ctrl-C while waiting asks whether to cancel the export or leave it running."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from dataport.settings import get_settings
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.client.cli_runner import cli_env
from tests.e2e.api_client import Api
from tests.fixtures.faults import EXPORT_WORKER, export_worker, slow_writer

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
STARTED = re.compile(r"Started export ([0-9a-f]{32})")


def spawn(env: dict[str, str], *args: str) -> pexpect.spawn[str]:
    return pexpect.spawn(sys.executable, ["-m", "dataport_cli", *args], env=env,
                         encoding="utf-8", dimensions=(40, 160), timeout=120)


def screen(child: pexpect.spawn[str]) -> str:
    """Everything the terminal received, without colours and cursor moves."""
    return ANSI.sub("", child.before or "")


def test_the_interactive_export_draws_its_bar_to_100_percent(
        env: dict[str, str], tmp_path: Path) -> None:
    # no --wait: on a terminal the export is followed, downloaded and verified
    child = spawn(env, "export", "--format", "markdown", "-o", f"{tmp_path}/")
    child.expect(pexpect.EOF)
    child.close()
    shown = screen(child)
    assert child.exitstatus == 0, shown
    assert re.search(r"Estimate: 3 projects, 6 sessions, \d+ messages", shown)
    # the job bar's last state: phase done, full, every session, ETA nil
    assert re.search(r"export\s+done\s+━+\s+100%\s+6/6\s+[\d.]+ kB.*ETA 0:00:00", shown), shown
    assert re.search(r"download\s+━+\s+100%", shown), shown
    assert re.search(r"Verified .*dataport-markdown-.*\.zip", shown.replace("\n", ""))
    assert env["DATAPORT_TOKEN"] not in shown
    assert len(list(tmp_path.glob("dataport-markdown-*.zip"))) == 1


@pytest.fixture
def slow(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An export that takes a few seconds (half a second a session), so Ctrl-C lands mid-way."""
    writer, _writing = slow_writer(0.5)
    monkeypatch.setitem(stack.handler_overrides, EXPORT_WORKER, export_worker(writer))
    monkeypatch.setenv("PAGE_SIZE", "2")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize(("answer", "exit_code", "status"), [
    ("cancel", 1, "cancelled"),
    ("leave", 130, "succeeded"),
])
def test_ctrl_c_while_waiting_asks_to_cancel_or_leave(
        stack: LocalStack, tmp_path: Path, slow: None, answer: str, exit_code: int,
        status: str) -> None:
    env = cli_env(stack, stack.token_for(seed.DEMO_USER_ID), tmp_path)
    child = spawn(env, "export", "--format", "json", "--wait", "-o", f"{tmp_path}/")
    child.expect(STARTED)
    assert isinstance(child.match, re.Match)
    job_id = child.match.group(1)
    child.expect("exporting")  # the bar is live and the export mid-way
    child.sendintr()
    child.expect(r"Cancel the export on the server, or leave it running\?")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == exit_code, screen(child)
    api = Api(stack, seed.DEMO_USER_ID)
    job = api.wait(job_id, timeout=120)
    assert job["status"] == status
    if answer == "leave":
        assert f"dataport watch {job_id}" in screen(child)
    assert not list(tmp_path.glob("*.zip"))  # nothing downloaded either way
