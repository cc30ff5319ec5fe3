"""The committed generated code matches what proto/ generates today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "genproto.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in (tmp_path / "meshchat").rglob("*")
        if p.is_file()
    }
    committed_root = ROOT / "services"
    committed = {
        p.relative_to(committed_root): p.read_bytes()
        for p in (committed_root / "meshchat").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    stale = sorted(
        str(path)
        for path in fresh.keys() | committed.keys()
        if fresh.get(path) != committed.get(path)
    )
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
