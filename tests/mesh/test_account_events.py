"""The chat service follows the auth service's account events through the real sidecars: the
chat sidecar's outbound route keeps the stream open, the auth sidecar attests chat's identity
in x-forwarded-client-cert, and the auth service, which the chart tells to trust that identity
for service-only methods, lets it watch."""

from __future__ import annotations

import pytest

from devtools.mesh import Mesh, http_get, wait_until

pytestmark = pytest.mark.mesh


def test_chat_follows_the_account_events_through_the_sidecars(mesh: Mesh) -> None:
    port = mesh.ports.component("chat")["metrics"]

    def following() -> bool:
        status, body = http_get(port, "/metrics")
        return status == 200 and "meshchat_chat_account_events_connected 1.0" in body

    wait_until(following, "the chat service's account-event stream is open", 30)
    auth_env = {e["name"]: e.get("value") for e in mesh.pods["auth"].containers["auth"]["env"]}
    assert auth_env["MESHCHAT_SERVICE_CALLERS"] == mesh.identity("chat")
