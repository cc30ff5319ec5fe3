"""Private files in meshchat's configuration directory: read whole, replaced whole, under a lock.

A change is made under an exclusive lock on a neighbouring lock file and written to a
temporary file that replaces the old one, so that concurrent ``meshchat`` processes never
see a half-written file and never make two changes from the same old content.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["config_dir", "locked", "write_json"]


def config_dir(environ: Mapping[str, str]) -> Path:
    """meshchat's folder in the user's configuration directory (XDG Base Directory)."""
    base = environ.get("XDG_CONFIG_HOME", "")
    # The specification says to ignore a relative path.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "meshchat"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock that guards changes to ``path`` (its folder is made, 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # flock excludes other processes and, through separate descriptors, other threads.
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def write_json(path: Path, document: Any) -> None:
    """Replace ``path`` by ``document`` as JSON, mode 0600, never half-written."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
