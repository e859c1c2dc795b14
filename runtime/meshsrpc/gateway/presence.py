"""Presence events for the gateway's WatchPresence: clients connecting, moving and leaving.

Each node with a feed publishes its own clients' changes as a mesh broadcast
(:data:`PRESENCE_BROADCAST`) and hands every node's changes to its local watchers, in
the order the broadcasts arrive. Attach a feed on every node of the mesh (the gateway
does it on its own node) before :meth:`MeshSrpcServer.mesh_start`.

A move is told at the new node: when a client connects, the node reads the registry
before it takes the client over, so it knows the node it leaves.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from ..mesh_server import MeshSrpcServer
from ..registry.base import RegisteredClient
from ..srpc.protocol import CloseCause
from ..srpc.stream import SrpcStream

__all__ = [
    "PRESENCE_BROADCAST",
    "PresenceChange",
    "PresenceFeed",
    "PresenceOverflowError",
    "PresenceWatch",
]

logger = logging.getLogger("meshsrpc.gateway.presence")

PRESENCE_BROADCAST = "meshsrpc:presence"
"""The mesh broadcast type carrying presence changes (TypeScript nodes ignore it)."""

PresenceKindName = Literal["connected", "moved", "disconnected"]
_KINDS: tuple[PresenceKindName, ...] = ("connected", "moved", "disconnected")

# Changes a watcher may have unread before it is dropped as too slow.
DEFAULT_WATCH_BACKLOG = 10_000

_FEEDS: weakref.WeakKeyDictionary[MeshSrpcServer[Any, Any, Any], PresenceFeed] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class PresenceChange:
    """A client connected, moved (from ``previous_node_id``) or disconnected, on ``node_id``."""

    kind: PresenceKindName
    client_id: str
    node_id: int
    previous_node_id: int
    metadata: Any

    def to_json(self) -> dict[str, Any]:
        """The broadcast payload."""
        return {
            "kind": self.kind,
            "clientId": self.client_id,
            "nodeId": self.node_id,
            "previousNodeId": self.previous_node_id,
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, data: Any) -> PresenceChange:
        """Parse a broadcast payload; ValueError when it is malformed."""
        if not isinstance(data, dict):
            raise ValueError("a presence change is a JSON object")
        kind, client_id = data.get("kind"), data.get("clientId")
        node_id, previous = data.get("nodeId"), data.get("previousNodeId", 0)
        if kind not in _KINDS or not isinstance(client_id, str):
            raise ValueError(f"malformed presence change {data!r}")
        if not (_is_int(node_id) and _is_int(previous)):
            raise ValueError(f"malformed presence change {data!r}")
        return cls(kind, client_id, node_id, previous, data.get("metadata"))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class PresenceOverflowError(Exception):
    """A watcher fell too far behind: its watch ended (it may watch again)."""


class PresenceWatch:
    """The changes since the watch started (``async with feed.watch() as changes``)."""

    def __init__(self, feed: PresenceFeed, client_id: str, backlog: int) -> None:
        self._feed = feed
        self._client_id = client_id
        self._queue: asyncio.Queue[PresenceChange | None] = asyncio.Queue(backlog + 1)
        self._backlog = backlog
        self._overflowed = False

    async def __aenter__(self) -> PresenceWatch:
        self._feed._watches.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._feed._watches.discard(self)

    def _deliver(self, change: PresenceChange) -> None:
        if self._overflowed or (self._client_id and change.client_id != self._client_id):
            return
        if self._queue.qsize() >= self._backlog:
            # Never block the feed for one slow watcher: end its watch instead.
            self._overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(change)

    def __aiter__(self) -> AsyncIterator[PresenceChange]:
        return self

    async def __anext__(self) -> PresenceChange:
        change = await self._queue.get()
        if change is None:
            raise PresenceOverflowError(f"the watcher fell {self._backlog} changes behind")
        return change


class PresenceFeed:
    """Publishes one node's presence changes to the mesh; fans the mesh's out to watchers."""

    def __init__(self, server: MeshSrpcServer[Any, Any, Any]) -> None:
        self._server = server
        self._watches: set[PresenceWatch] = set()
        # Client id -> the node it was on when it connected here, until announced.
        self._moved_from: dict[str, int] = {}
        server.register_connection_handler(self._on_connection)
        server.register_disconnect_handler(self._on_stream_gone)
        server.on_client_connected(self._on_connected)
        server.on_client_disconnected(self._on_disconnected)
        server.on_node_clients_orphaned(self._on_orphaned)
        server.register_broadcast_handler(PRESENCE_BROADCAST, self._on_broadcast)

    @classmethod
    def of(cls, server: MeshSrpcServer[Any, Any, Any]) -> PresenceFeed:
        """The server's feed, attached on first use (before ``mesh_start``)."""
        feed = _FEEDS.get(server)
        if feed is None:
            feed = _FEEDS[server] = cls(server)
        return feed

    @property
    def watch_count(self) -> int:
        """How many watches are open on this node."""
        return len(self._watches)

    def watch(self, client_id: str = "", *, backlog: int = DEFAULT_WATCH_BACKLOG) -> PresenceWatch:
        """Watch every client's changes (or one client's) from now on."""
        return PresenceWatch(self, client_id, backlog)

    # --- publishing this node's changes -------------------------------------------------

    async def _on_connection(self, stream: SrpcStream) -> None:
        # Before activation the registry still names the node the client is leaving
        # (a takeover is written at activation).
        try:
            entry = await self._server.client_registry.get_client(stream.client_id)
        except Exception as exc:
            logger.warning("presence: cannot read %s's registry entry: %s", stream.client_id, exc)
            return
        own = self._server.mesh_instance_id
        if entry is not None and own and entry.node_id != own:
            self._moved_from[stream.client_id] = entry.node_id
        else:
            self._moved_from.pop(stream.client_id, None)

    def _on_stream_gone(self, stream: SrpcStream, _cause: CloseCause) -> None:
        if stream.client_id not in self._server.streams_by_client_id:
            self._moved_from.pop(stream.client_id, None)

    async def _on_connected(self, client_id: str, metadata: Any) -> None:
        previous = self._moved_from.pop(client_id, 0)
        kind: PresenceKindName = "moved" if previous else "connected"
        own = self._server.mesh_instance_id
        await self._publish(PresenceChange(kind, client_id, own, previous, metadata))

    async def _on_disconnected(self, client_id: str, metadata: Any) -> None:
        own = self._server.mesh_instance_id
        await self._publish(PresenceChange("disconnected", client_id, own, 0, metadata))

    async def _on_orphaned(self, node_id: int, clients: list[RegisteredClient[Any]]) -> None:
        # Run by the leader for a dead node: its clients left without a word.
        for client in clients:
            change = PresenceChange("disconnected", client.client_id, node_id, 0, client.metadata)
            await self._publish(change)

    async def _publish(self, change: PresenceChange) -> None:
        # The base class's broadcast: a generated server accepts only the app's types.
        await MeshSrpcServer.broadcast(self._server, PRESENCE_BROADCAST, change.to_json())

    # --- delivering the mesh's changes --------------------------------------------------

    def _on_broadcast(self, data: Any, _sender: int) -> None:
        try:
            change = PresenceChange.from_json(data)
        except ValueError as exc:
            logger.warning("presence: dropped a broadcast: %s", exc)
            return
        for watch in list(self._watches):
            watch._deliver(change)
