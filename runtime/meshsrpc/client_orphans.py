"""The leader's report of a dead node's clients: removed from the registry and reported once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ._tasks import call_sync_or_async
from .client_presence import ClientPresence
from .client_routes import ClientRoutes
from .mesh import MeshService
from .registry.base import RegisteredClient
from .registry.registry import MeshClientRegistry

__all__ = ["NodeClientsOrphanedCallback", "OrphanReports"]

logger = logging.getLogger("meshsrpc.client_service")

#: On the leader, once per dead node that still had clients: cb(node_id, clients).
NodeClientsOrphanedCallback = Callable[[int, list[RegisteredClient[Any]]], Any]


class OrphanReports:
    """Runs on the leader for every node it removed (the mesh's node-cleaned-up callback)."""

    def __init__(
        self,
        mesh: MeshService,
        routes: ClientRoutes,
        registry: Callable[[], MeshClientRegistry[Any]],
        presence: ClientPresence,
        *,
        key: str,
    ) -> None:
        self._mesh = mesh
        self._routes = routes
        self._registry = registry
        self._presence = presence
        self._key = key
        self.callbacks: list[NodeClientsOrphanedCallback] = []
        mesh.set_node_cleaned_up_callback(self._on_node_cleaned_up)

    async def _on_node_cleaned_up(self, node_id: int) -> None:
        self._routes.forget_node(node_id)
        try:
            # Atomic: of concurrent cleanups of one node, only one gets its clients.
            clients = await self._registry().cleanup_node(node_id)
        except Exception:
            logger.exception("could not remove the clients of dead node %d", node_id)
            return
        self._presence.event("nodeDown", deadNodeId=node_id, orphans=[c.client_id for c in clients])
        if not clients:
            return
        if self._mesh.observer is not None:
            self._mesh.observer.orphans_reported(node_id, len(clients))
        logger.info(
            "node %d died with %d client(s)",
            node_id,
            len(clients),
            extra={
                "mesh_key": self._key,
                "node_id": self._mesh.instance_id,
                "dead_node_id": node_id,
                "orphans": len(clients),
            },
        )
        for callback in list(self.callbacks):
            try:
                await call_sync_or_async(callback, node_id, clients)
            except Exception:
                logger.exception("on_node_clients_orphaned callback failed for node %d", node_id)
