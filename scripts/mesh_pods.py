"""``make mesh-pods``: the Helm chart's pods as podman pods on one machine (devtools.pods).

``python -m scripts.mesh_pods [--edge-port PORT] [--workdir DIR]``; Ctrl-C (or SIGTERM) stops and
removes the pods and their network.
"""

from __future__ import annotations

import sys

from devtools.pods.cli import main

if __name__ == "__main__":
    sys.exit(main())
