"""The storage backends the tests run on, and the fixture that makes a database of each."""

from __future__ import annotations

import pytest

__all__ = ["DATABASES", "SQLITE_ONLY", "STORES", "database_url_of"]

# The real backends: each service runs on both.
DATABASES = ("sqlite", "postgresql")
# What the store contract suites run on: the real backends and the unit tier's fake.
STORES = ("memory", *DATABASES)

_URL_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}


def database_url_of(request: pytest.FixtureRequest, backend: str) -> str:
    """The URL of a new, empty database of ``backend`` (from the root conftest's fixtures)."""
    url: str = request.getfixturevalue(_URL_FIXTURES[backend])
    return url


# For a real-server test whose storage the store contract suite already covers on every
# backend: run it on SQLite only (``database_url`` is the root conftest's fixture).
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
