"""Fixtures of the auth tests: the auth API's stubs on the SQLite service, or on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.auth_stubs import Stubs
from tests.support.stack import RunningAuth


@pytest.fixture
async def stubs(auth: RunningAuth) -> AsyncIterator[Stubs]:
    """Stubs for the SQLite auth service."""
    async with auth.channel() as channel:
        yield Stubs(channel)


@pytest.fixture
async def stubs_any(auth_any: RunningAuth) -> AsyncIterator[Stubs]:
    """Stubs for the auth service of each backend."""
    async with auth_any.channel() as channel:
        yield Stubs(channel)
