"""Fixtures shared by the whole suite: storage backends and the throwaway PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools.postgres import (
    ExistingPostgres,
    PostgresNotAvailable,
    PostgresServer,
    throwaway_postgres,
)
from tests.support.backends import DATABASES, database_url_of
from tests.support.stack import RunningAuth, start_auth

# The packages whose tests share one costly thing, kept on one xdist worker (`make test` runs
# the suite on several): a package-scoped mesh, or the container engine's images and pods.
SHARED_BY_PACKAGE = {"mesh": "mesh", "observe": "observe", "containers": "podman", "pods": "podman"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups the tests for `pytest -n N --dist loadgroup`: a module's tests run on one worker,
    so that its module-scoped fixtures start once, and so do the packages above."""
    tests_dir = Path(__file__).parent
    for item in items:
        relative = item.path.relative_to(tests_dir)
        group = SHARED_BY_PACKAGE.get(relative.parts[0], relative.as_posix())
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session. In CI a missing server is a failure."""
    existing = os.environ.get("MESHCHAT_TEST_DATABASE_URL")
    if existing:
        yield ExistingPostgres(existing)
        return
    try:
        with throwaway_postgres() as server:
            yield server
    except PostgresNotAvailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty PostgreSQL database."""
    return postgres_server.create_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a new SQLite file."""
    return f"sqlite:///{tmp_path / 'db' / 'test.db'}"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once per storage backend: an SQLite file and a PostgreSQL database."""
    return database_url_of(request, request.param)


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[RunningAuth]:
    """An auth service on SQLite."""
    running = await start_auth(tmp_path / "auth")
    yield running
    await running.stop()


@pytest.fixture
async def auth_any(tmp_path: Path, database_url: str) -> AsyncIterator[RunningAuth]:
    """An auth service, once per storage backend."""
    running = await start_auth(tmp_path / "auth", database_url)
    yield running
    await running.stop()
