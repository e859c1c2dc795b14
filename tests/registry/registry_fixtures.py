"""Helpers of the registry suite: two nodes over one backend, a backend without reservations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshsrpc import MeshClientMemoryRegistry, MeshClientRegistry, RegisteredClient
from meshsrpc.registry import MeshClientRegistryBackend

Meta = Any


class WithoutReservation:
    """Only the seven required methods, so MeshClientRegistry takes its fallback path."""

    def __init__(self, inner: MeshClientMemoryRegistry[Meta]) -> None:
        self._inner = inner

    async def register(
        self, client_id: str, node_id: int, metadata: Meta, *, allow_supersede: bool = True
    ) -> int | None:
        return await self._inner.register(
            client_id, node_id, metadata, allow_supersede=allow_supersede
        )

    async def unregister(self, client_id: str, node_id: int) -> bool:
        return await self._inner.unregister(client_id, node_id)

    async def update_metadata(self, client_id: str, node_id: int, metadata: Meta) -> bool:
        return await self._inner.update_metadata(client_id, node_id, metadata)

    async def get_client(self, client_id: str) -> RegisteredClient[Meta] | None:
        return await self._inner.get_client(client_id)

    async def list_clients(self) -> list[RegisteredClient[Meta]]:
        return await self._inner.list_clients()

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[Meta]]:
        return await self._inner.list_clients_for_node(node_id)

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[Meta]]:
        return await self._inner.cleanup_node(node_id)


@dataclass
class Nodes:
    """Two nodes' views (1 and 2) of one shared registry store."""

    backend: MeshClientRegistryBackend[Meta]
    one: MeshClientRegistry[Meta]
    two: MeshClientRegistry[Meta]
