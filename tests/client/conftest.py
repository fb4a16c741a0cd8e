"""Fixtures of the CLI tests: one seeded database for the module, a fresh stack per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.client.cli_runner import cli_env
from tests.e2e.api_client import seeded_database

DB_NAME = "dataport_cli_tests"


@pytest.fixture(scope="package")
def dataset(local_stack: LocalStack) -> Iterator[seed.SeedSummary]:
    with pytest.MonkeyPatch.context() as patch, seeded_database(
            patch, local_stack, DB_NAME, sessions_per_project=2) as summary:
        yield summary


@pytest.fixture
def stack(fresh_stack: LocalStack, dataset: seed.SeedSummary) -> LocalStack:
    return fresh_stack


@pytest.fixture
def env(stack: LocalStack, tmp_path: Path) -> dict[str, str]:
    """The demo user's environment, with a JWT."""
    return cli_env(stack, stack.token_for(seed.DEMO_USER_ID), tmp_path)
