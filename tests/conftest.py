"""Shared fixtures live in tests/fixtures/, one module per part of the stack."""

pytest_plugins = [
    "tests.fixtures.environment",
    "tests.fixtures.aws",
    "tests.fixtures.mongo",
    "tests.fixtures.stack",
    "tests.e2e.api_client",  # api, intruder
]
