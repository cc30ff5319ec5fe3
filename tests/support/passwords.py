"""The password every test account signs up with."""

from __future__ import annotations

__all__ = ["PASSWORD"]

PASSWORD = "correct horse battery"
