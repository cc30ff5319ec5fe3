"""ConfigMap and Secret volumes, published into a directory the way the kubelet does."""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["publish_volume"]


def publish_volume(directory: Path, files: Mapping[str, bytes], mode: int) -> None:
    """Write files as the kubelet publishes a ConfigMap or Secret volume: into a new timestamped
    directory, made current by atomically renaming a ``..data`` symlink onto the old one, each
    file a symlink through ``..data``. Envoy's ``watched_directory`` sees that one rename."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    version = directory / stamp
    version.mkdir()
    for name, data in files.items():
        (version / name).write_bytes(data)
        (version / name).chmod(mode)
    current = directory / "..data"
    previous = current.resolve() if current.is_symlink() else None
    staged = directory / "..data_tmp"
    staged.symlink_to(stamp)
    staged.replace(current)
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    if previous is not None:
        shutil.rmtree(previous)
