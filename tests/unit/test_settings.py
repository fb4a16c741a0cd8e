"""Settings are required where they name a resource: a cold start without one fails at once,
with one message naming every missing variable, and the template gives each function all."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from dataport.settings import MissingSettings, get_mongo_settings, get_settings
from tests.fixtures.environment import template, template_environment
from tests.handlers import load_handler, module_name


@pytest.fixture(autouse=True)
def _settings_read_again() -> Iterator[None]:
    """No test leaves settings cached from the environment it broke."""
    yield
    get_settings.cache_clear()
    get_mongo_settings.cache_clear()


def _cold_start(function_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import the function's handler afresh, as a new Lambda container does."""
    monkeypatch.delitem(sys.modules, module_name(function_dir), raising=False)
    get_settings.cache_clear()
    get_mongo_settings.cache_clear()
    load_handler(function_dir, fresh=True)


def test_a_cold_start_without_variables_fails_naming_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_TABLE")
    monkeypatch.setenv("PACKAGES_BUCKET", "")  # empty is as missing as absent
    with pytest.raises(MissingSettings) as refused:
        _cold_start("export_worker", monkeypatch)
    assert str(refused.value) == (
        "dataport cannot start, missing environment variables: JOBS_TABLE, PACKAGES_BUCKET "
        "(template.yaml sets them on every function)")


def test_the_api_names_a_missing_state_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMPORT_STATE_MACHINE_ARN")
    with pytest.raises(MissingSettings, match=r"variables: IMPORT_STATE_MACHINE_ARN \("):
        _cold_start("api", monkeypatch)


def test_an_unusable_tunable_is_named_with_the_missing_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COPY_ID_SECRET")
    monkeypatch.setenv("UPLOAD_PART_SIZE_MB", "64")
    get_settings.cache_clear()
    with pytest.raises(MissingSettings) as refused:
        get_settings()
    message = str(refused.value)
    assert "missing environment variables: COPY_ID_SECRET;" in message
    assert "invalid environment variables: UPLOAD_PART_SIZE_MB (Input should be less than or " \
           "equal to 16)" in message


@pytest.mark.parametrize("logical_id", sorted(template().functions()))
def test_each_function_starts_with_what_the_template_gives_it(
        logical_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    function = template().functions()[logical_id]
    for name in template_environment():
        monkeypatch.delenv(name, raising=False)
    for name, value in function.environment.items():
        monkeypatch.setenv(name, value)
    _cold_start(function.code_dir.name, monkeypatch)


def test_a_function_that_reaches_mongodb_names_its_missing_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_URI_SECRET")
    with pytest.raises(MissingSettings) as refused:
        _cold_start("export_plan", monkeypatch)
    assert str(refused.value) == (
        "dataport cannot start, missing environment variables: MONGODB_URI_SECRET "
        "(template.yaml sets them on the functions that reach MongoDB)")


def test_a_function_that_never_reaches_mongodb_starts_without_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MONGODB_URI_SECRET", "MONGODB_DATABASE"):
        monkeypatch.delenv(name)
    _cold_start("authorizer", monkeypatch)
    _cold_start("export_finalize", monkeypatch)
