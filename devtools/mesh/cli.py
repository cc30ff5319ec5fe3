"""``make mesh`` (``python -m scripts.mesh``): start the mesh, print how to reach it, run in the
foreground until Ctrl-C or SIGTERM, then stop everything."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import IO

import devtools.mesh
from devtools.mesh.errors import MeshError
from devtools.mesh.mesh import Mesh, run_mesh
from devtools.mesh.processes import Child
from devtools.tools import ToolMissing

__all__ = ["main"]


def _description() -> str:
    """The first paragraph of devtools.mesh's docstring."""
    return (devtools.mesh.__doc__ or "").split("\n\n")[0]


def _wait_for_a_dead_child(mesh: Mesh) -> Child:
    """Block until one of the mesh's processes exits. ``waitid`` with WNOWAIT leaves the child
    unreaped, so its Popen still reads the exit status; Ctrl-C and SIGTERM interrupt it."""
    while not (dead := mesh.dead_children()):
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
    return dead[0]


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    """``make mesh``: start the mesh, print how to reach it, run until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=_description())
    parser.add_argument("--edge-port", type=int, default=0, help="edge listener port (0: free)")
    parser.add_argument(
        "--workdir", type=Path, help="keep files and logs here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    # SIGTERM like Ctrl-C: a KeyboardInterrupt, so that everything is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print("Starting the mesh (helm template, certificates, PostgreSQL, apps, Envoys)...", file=out)
    out.flush()
    try:
        with run_mesh(args.workdir, args.edge_port) as mesh:
            print(mesh.describe(), file=out, flush=True)
            dead = _wait_for_a_dead_child(mesh)
            print(f"{dead.name} exited ({dead.process.returncode}):\n{dead.tail()}", file=out)
            return 1
    except KeyboardInterrupt:
        print("Stopped.", file=out)
        return 0
    except (MeshError, ToolMissing) as exc:
        print(f"make mesh: {exc}", file=sys.stderr)
        return 1
