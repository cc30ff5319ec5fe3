"""``make mesh``: the Helm chart's pods as processes on this machine, with real Envoy and mTLS.

The code lives in devtools.mesh (see its docstring); this is the documented entry point,
``python -m scripts.mesh [--edge-port PORT] [--workdir DIR]``. Ctrl-C (or SIGTERM) stops it all.
"""

from __future__ import annotations

import sys

from devtools.mesh.cli import main

if __name__ == "__main__":
    sys.exit(main())
