"""MeshClientRegistry: one node's view of the client registry, over any backend."""

from __future__ import annotations

from typing import Generic

from .base import (
    MeshClientRegistryBackend,
    MeshClientReservationBackend,
    RegisteredClient,
    TMeta,
)

__all__ = ["MeshClientRegistry"]


class MeshClientRegistry(Generic[TMeta]):
    """The registry as seen from node ``node_id``: writes are made as (and only by) that node.

    Every mutation is ownership-safe: unregister and update_metadata change nothing
    when the client has since moved to another node.
    """

    def __init__(self, node_id: int, backend: MeshClientRegistryBackend[TMeta]) -> None:
        self._node_id = node_id
        self.backend = backend
        # Checked once: isinstance on a runtime protocol is slow for a hot path.
        self._reserving: MeshClientReservationBackend[TMeta] | None = (
            backend if isinstance(backend, MeshClientReservationBackend) else None
        )
        # Backends without reservations register at activation; remember what the
        # reservation asked for so a conflict is still refused then.
        self._deferred: dict[str, bool] = {}

    @property
    def node_id(self) -> int:
        """The node this registry writes as."""
        return self._node_id

    @property
    def supports_reservation(self) -> bool:
        """True when the backend implements ``reserve``/``activate`` itself."""
        return self._reserving is not None

    async def register(
        self, client_id: str, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Register on this node; return the node superseded, or None.

        Raises ClientConflictError when another node owns the client and
        ``allow_supersede`` is False.
        """
        return await self.backend.register(
            client_id, self._node_id, metadata, allow_supersede=allow_supersede
        )

    async def unregister(self, client_id: str) -> bool:
        """Remove the client if this node owns it."""
        self._deferred.pop(client_id, None)
        return await self.backend.unregister(client_id, self._node_id)

    async def update_metadata(self, client_id: str, metadata: TMeta) -> bool:
        """Replace the metadata if this node owns the client; connected_at is kept."""
        return await self.backend.update_metadata(client_id, self._node_id, metadata)

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """The client, or None if unknown or only reserved."""
        return await self.backend.get_client(client_id)

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every client of the mesh."""
        return await self.backend.list_clients()

    async def list_clients_for_node(
        self, node_id: int | None = None
    ) -> list[RegisteredClient[TMeta]]:
        """The clients ``node_id`` owns (None = this node)."""
        return await self.backend.list_clients_for_node(
            self._node_id if node_id is None else node_id
        )

    async def cleanup_node(self, node_id: int | None = None) -> list[RegisteredClient[TMeta]]:
        """Remove the clients ``node_id`` (None = this node) still owns; return them."""
        return await self.backend.cleanup_node(self._node_id if node_id is None else node_id)

    async def reserve(
        self, client_id: str, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Reserve the client for this node, hidden until :meth:`activate`.

        Returns the node superseded, or None; raises ClientConflictError like
        :meth:`register`. Without backend support this only remembers
        ``allow_supersede`` for the registration :meth:`activate` then makes.
        """
        if self._reserving is not None:
            return await self._reserving.reserve(
                client_id, self._node_id, metadata, allow_supersede=allow_supersede
            )
        self._deferred[client_id] = allow_supersede
        return None

    async def activate(self, client_id: str, metadata: TMeta) -> bool:
        """Make the reservation visible; False if another node took the client meanwhile.

        Without backend support this is the registration itself (see
        :meth:`register_reserved`) and returns True.
        """
        if self._reserving is not None:
            return await self._reserving.activate(client_id, self._node_id, metadata)
        await self.register_reserved(client_id, metadata)
        return True

    async def register_reserved(self, client_id: str, metadata: TMeta) -> int | None:
        """For backends without reservations: register with the reservation's options.

        Returns the node superseded, or None; raises ClientConflictError when the
        reservation refused supersede and another node owns the client.
        """
        allow_supersede = self._deferred.pop(client_id, True)
        return await self.register(client_id, metadata, allow_supersede=allow_supersede)
