"""The mesh's own failure."""

from __future__ import annotations

__all__ = ["MeshError"]


class MeshError(RuntimeError):
    """The mesh could not be started or did not become healthy."""
