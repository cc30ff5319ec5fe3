"""The ports of the mesh: every listener of every process, distinct, on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass

from devtools.processes import free_port

__all__ = ["Ports"]


@dataclass(frozen=True)
class Ports:
    """Every port of the mesh, distinct, on 127.0.0.1."""

    auth_app: int
    auth_app_metrics: int
    auth_inbound: int
    auth_health: int
    auth_metrics: int
    auth_admin: int
    chat_app: int
    chat_app_metrics: int
    chat_inbound: int
    chat_health: int
    chat_metrics: int
    chat_admin: int
    chat_outbound: int
    edge: int
    edge_health: int
    edge_metrics: int
    edge_admin: int

    @classmethod
    def free(cls, edge: int = 0) -> Ports:
        """Free ports right now, all distinct (``edge``, when not 0, for the edge listener)."""
        chosen: dict[str, int] = {"edge": edge} if edge else {}
        for name in cls.__dataclass_fields__:
            while name not in chosen:
                port = free_port()
                if port not in chosen.values():
                    chosen[name] = port
        return cls(**chosen)

    def component(self, component: str) -> dict[str, int]:
        """The ports of one component, by the suffix of their field names."""
        prefix = f"{component}_"
        return {
            name.removeprefix(prefix): value
            for name, value in vars(self).items()
            if name.startswith(prefix)
        }
