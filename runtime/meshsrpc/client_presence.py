"""What one node tells about its clients: presence events (WIRE.md §6) and metrics."""

from __future__ import annotations

from typing import Any

from .mesh import MeshService
from .registry.metadata import now_ms

__all__ = ["ClientPresence"]


class ClientPresence:
    """Publishes this node's client events on the mesh's event channel and counts them."""

    def __init__(self, mesh: MeshService) -> None:
        self._mesh = mesh

    def event(self, event: str, **fields: Any) -> None:
        """Publish a presence event (WIRE.md §6) as this node."""
        self._mesh.publish_event(
            {"event": event, "nodeId": self._mesh.instance_id, **fields, "at": now_ms()}
        )

    def connected(self, client_id: str, old_node: int | None) -> None:
        """A client registered here: a move when it came from another node."""
        observer = self._mesh.observer
        if old_node is not None and old_node != self._mesh.instance_id:
            if observer is not None:
                observer.client_connected()
                observer.client_moved()
            self.event("move", clientId=client_id, fromNodeId=old_node)
        else:
            if observer is not None:
                observer.client_connected()
            self.event("connect", clientId=client_id)

    def disconnected(self, client_id: str) -> None:
        """A client of this node left."""
        if self._mesh.observer is not None:
            self._mesh.observer.client_disconnected()
        self.event("disconnect", clientId=client_id)

    def registry_failed(self, operation: str) -> None:
        """A registry write failed (Redis unreachable...)."""
        if self._mesh.observer is not None:
            self._mesh.observer.registry_error(operation)
