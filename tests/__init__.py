"""meshchat's test suite."""

import os

# The CLI tests start `meshchat` in a pseudo-terminal, which pexpect makes with fork(). With
# gRPC's fork support on, the child restarts gRPC's polling threads between fork() and exec(),
# and they fail on the descriptors the child closes (about 1 spawn in 30 died that way). The
# suite never uses gRPC in a forked child, so the handlers are switched off before gRPC loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
