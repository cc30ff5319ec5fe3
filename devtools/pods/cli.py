"""``make mesh-pods`` (``python -m scripts.mesh_pods``): start the pods, print how to reach them,
wait until Ctrl-C or SIGTERM, then stop and remove them."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import devtools.pods
from devtools.images import BuildError
from devtools.mesh.errors import MeshError
from devtools.pods.engine import PodsUnavailable
from devtools.pods.mesh import run_pod_mesh
from devtools.podspec import Unsupported
from devtools.tools import ToolMissing

__all__ = ["main"]


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    """Start the pods, print how to reach the edge, run until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=(devtools.pods.__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--edge-port", type=int, default=0, help="host port of the edge (0: a free one)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep files here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    # SIGTERM like Ctrl-C: a KeyboardInterrupt, so that the pods are removed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print("Starting the pods (images, helm template, podman network and pods)...", file=out)
    out.flush()
    try:
        with run_pod_mesh(args.workdir, args.edge_port) as mesh:
            print(mesh.describe(), file=out, flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("Stopped.", file=out)
        return 0
    except (
        BuildError,
        MeshError,
        PodsUnavailable,
        ToolMissing,
        Unsupported,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"make mesh-pods: {exc}\n{getattr(exc, 'stderr', '') or ''}", file=sys.stderr)
        return 1
    return 0
