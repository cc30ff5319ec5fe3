"""Where things are: the repository, the chart, the downloaded tools and this venv's programs."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["CHART", "REPO_ROOT", "TOOLS_DIR", "VENV_BIN"]

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "meshchat"
# What `make tools` puts there: helm (scripts/fetch_helm.py) and checkov's own venv.
TOOLS_DIR = REPO_ROOT / ".cache" / "tools"
# The console scripts installed next to this interpreter (the project's .venv).
VENV_BIN = Path(sys.executable).parent
