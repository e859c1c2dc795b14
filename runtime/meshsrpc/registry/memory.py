"""The client registry in process memory: one node, or several nodes of a ``memory://`` mesh."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, cast

from ..errors import ClientConflictError
from .base import RegisteredClient, TMeta
from .metadata import decode_metadata, encode_metadata, now_ms

__all__ = ["MeshClientMemoryRegistry"]


@dataclass
class _Entry:
    node_id: int
    connected_at: int
    # Stored as JSON text, like Redis does: callers get fresh copies and the values
    # round-trip exactly as through the Redis backend (tuples become lists, ...).
    metadata: str | None
    active: bool


class MeshClientMemoryRegistry(Generic[TMeta]):
    """Registry backend in memory, with the Redis backend's semantics (incl. reservations).

    ``MeshClientMemoryRegistry()`` is a store of its own. Nodes of one in-process
    ``memory://`` mesh share one through :meth:`shared`. Every method completes
    without yielding to the event loop, so each is atomic.
    """

    _shared: ClassVar[weakref.WeakValueDictionary[str, MeshClientMemoryRegistry[Any]]] = (
        weakref.WeakValueDictionary()
    )

    def __init__(self) -> None:
        self._clients: dict[str, _Entry] = {}
        self._by_node: dict[int, set[str]] = {}

    @classmethod
    def shared(cls, name: str) -> MeshClientMemoryRegistry[Any]:
        """The store shared by everyone asking for ``name`` (kept while anyone holds it)."""
        registry = cls._shared.get(name)
        if registry is None:
            registry = MeshClientMemoryRegistry[Any]()
            cls._shared[name] = registry
        return registry

    async def register(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Make ``node_id`` the owner; see MeshClientRegistryBackend.register."""
        return self._write(client_id, node_id, metadata, allow_supersede, active=True)

    async def reserve(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Register hidden until :meth:`activate`."""
        return self._write(client_id, node_id, metadata, allow_supersede, active=False)

    async def activate(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Make this node's reservation visible; keeps connected_at."""
        text = encode_metadata(metadata)
        entry = self._clients.get(client_id)
        if entry is None or entry.node_id != node_id:
            return False
        entry.metadata, entry.active = text, True
        self._by_node.setdefault(node_id, set()).add(client_id)
        return True

    async def unregister(self, client_id: str, node_id: int) -> bool:
        """Remove the client if ``node_id`` owns it."""
        self._discard_member(node_id, client_id)
        entry = self._clients.get(client_id)
        if entry is None or entry.node_id != node_id:
            return False
        del self._clients[client_id]
        return True

    async def update_metadata(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Replace the metadata if ``node_id`` owns the client."""
        text = encode_metadata(metadata)
        entry = self._clients.get(client_id)
        if entry is None or entry.node_id != node_id:
            return False
        entry.metadata = text
        return True

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """The active client, or None."""
        entry = self._clients.get(client_id)
        return None if entry is None or not entry.active else _client(client_id, entry)

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client."""
        return [_client(cid, e) for cid, e in self._clients.items() if e.active]

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns."""
        found: list[RegisteredClient[TMeta]] = []
        for client_id in self._by_node.get(node_id, ()):
            entry = self._clients.get(client_id)
            if entry is not None and entry.active and entry.node_id == node_id:
                found.append(_client(client_id, entry))
        return found

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` still owns; return the active ones."""
        removed: list[RegisteredClient[TMeta]] = []
        for client_id in self._by_node.pop(node_id, set()):
            entry = self._clients.get(client_id)
            if entry is not None and entry.node_id == node_id:
                del self._clients[client_id]
                if entry.active:
                    removed.append(_client(client_id, entry))
        return removed

    async def aclose(self) -> None:
        """Nothing to close; present so every shipped backend can be closed alike."""

    def _write(
        self, client_id: str, node_id: int, metadata: TMeta, allow_supersede: bool, *, active: bool
    ) -> int | None:
        text = encode_metadata(metadata)
        previous = self._clients.get(client_id)
        superseded: int | None = None
        if previous is not None and previous.node_id != node_id:
            if not allow_supersede:
                raise ClientConflictError(client_id, previous.node_id)
            self._discard_member(previous.node_id, client_id)
            superseded = previous.node_id
        self._clients[client_id] = _Entry(node_id, now_ms(), text, active)
        self._by_node.setdefault(node_id, set()).add(client_id)
        return superseded

    def _discard_member(self, node_id: int, client_id: str) -> None:
        members = self._by_node.get(node_id)
        if members is not None:
            members.discard(client_id)
            if not members:
                del self._by_node[node_id]


def _client(client_id: str, entry: _Entry) -> RegisteredClient[TMeta]:
    metadata = cast("TMeta", decode_metadata(entry.metadata))
    return RegisteredClient(client_id, entry.node_id, entry.connected_at, metadata)
