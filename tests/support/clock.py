"""A clock that moves only when a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    """Callable like the services' clocks: ``clock()`` is the current moment."""

    def __init__(self, start: datetime | None = None) -> None:
        # Starts at the real time, as token libraries check expiry against the real clock;
        # on a whole second, as tokens carry whole seconds.
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time (forward, or back with a negative number)."""
        self.now += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        """The current moment as epoch seconds (the clock of TokenVerifier)."""
        return self.now.timestamp()
