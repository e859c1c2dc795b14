"""The client registry's data model and the interface a storage backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

__all__ = [
    "MeshClientRegistryBackend",
    "MeshClientReservationBackend",
    "RegisteredClient",
    "TMeta",
]

TMeta = TypeVar("TMeta")


@dataclass(frozen=True)
class RegisteredClient(Generic[TMeta]):
    """One connected client: which node holds its stream, since when, and its metadata.

    ``connected_at`` is epoch milliseconds, as on the wire. ``metadata`` is None when
    the client registered without metadata.
    """

    client_id: str
    node_id: int
    connected_at: int
    metadata: TMeta


@runtime_checkable
class MeshClientRegistryBackend(Protocol[TMeta]):
    """Storage for the client registry; implement it to keep clients in your own store.

    Every mutation must be atomic and ownership-safe: a node only changes or removes
    entries it owns, so a late unregister from a node the client already left is a
    no-op. ``metadata`` must be JSON-serialisable (None = no metadata); backends raise
    TypeError before writing anything when it is not.
    """

    async def register(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Make ``node_id`` the owner; return the node superseded, or None (new or same node).

        Raises ClientConflictError, changing nothing, when another node owns the
        client and ``allow_supersede`` is False.
        """
        ...

    async def unregister(self, client_id: str, node_id: int) -> bool:
        """Remove the client if ``node_id`` owns it; True if removed."""
        ...

    async def update_metadata(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Replace the metadata if ``node_id`` owns the client (keeps connected_at)."""
        ...

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """The client, or None if unknown or only reserved."""
        ...

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client, each once."""
        ...

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns."""
        ...

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client still owned by ``node_id``; return the active ones removed."""
        ...


@runtime_checkable
class MeshClientReservationBackend(MeshClientRegistryBackend[TMeta], Protocol[TMeta]):
    """A backend that can hold a registration hidden until the stream is activated.

    The SRPC server reserves at WebSocket connect (so conflicts and supersedes are
    settled before the handshake finishes) and activates after the first ping.
    """

    async def reserve(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Like register, but the entry stays invisible to reads until activated."""
        ...

    async def activate(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Make a reservation visible if ``node_id`` still owns it; keeps connected_at."""
        ...
