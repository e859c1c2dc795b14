"""What the mesh and the leader lock need from a backend: the interface every engine implements.

An engine owns storage and transport (Redis, or the in-process ``memory://`` hub);
MeshService and LeaderService own the behaviour (timers, dispatch, callbacks) and
see only these methods. Key and channel names are part of the wire contract
(WIRE.md §1): :mod:`meshsrpc.keys` computes them once, for every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..keys import MeshKeys, leader_lock_key

__all__ = [
    "LeaderLockEngine",
    "MeshEngine",
    "MeshKeys",
    "MessageCallback",
    "MessageSource",
    "SubscriptionEvent",
    "SubscriptionEventCallback",
    "decode_nodes",
    "leader_lock_key",
]


def decode_nodes(raw: Mapping[Any, Any]) -> dict[int, str]:
    """The ``nodes`` hash (id -> hostname) as HGETALL returns it; fields not an id are skipped."""
    nodes: dict[int, str] = {}
    for field, value in raw.items():
        with contextlib.suppress(ValueError):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            nodes[int(field)] = text
    return nodes


class MessageSource(enum.Enum):
    """Which of a node's two channels a message arrived on."""

    INBOX = "inbox"
    BROADCAST = "broadcast"


class SubscriptionEvent(enum.Enum):
    """Changes of a node's subscription after it was first established."""

    #: The connection carrying the subscription broke; messages may be lost until RESTORED.
    LOST = "lost"
    #: The subscription is live again after a LOST (the store may have restarted empty).
    RESTORED = "restored"


#: Receives one raw published payload (UTF-8 JSON bytes), on the event loop, never re-entrantly.
MessageCallback = Callable[[MessageSource, bytes], None]
#: Receives subscription state changes; called on the event loop.
SubscriptionEventCallback = Callable[[SubscriptionEvent], None]


class MeshEngine(Protocol):
    """Storage and transport of one mesh (one key) for one node."""

    async def allocate_instance_id(self) -> int:
        """Atomically hand out the next instance id (1, 2, ...)."""
        ...

    async def heartbeat(self, instance_id: int) -> bool:
        """Record a heartbeat now, by the store's own clock.

        Returns True when the node's entry did not exist before (first beat, or the
        store lost it, e.g. Redis restarted empty).
        """
        ...

    async def register_node(self, instance_id: int, hostname: str) -> None:
        """Store the node's hostname in the node list."""
        ...

    async def rejoin(self, instance_id: int, hostname: str) -> None:
        """Re-add a node whose entries vanished: hostname again, and make sure the id
        counter never hands out ``instance_id`` (or a smaller one) again."""
        ...

    async def cleanup_expired(self, node_ttl_ms: int) -> list[int]:
        """Atomically remove every node whose last heartbeat is ``node_ttl_ms`` or more
        old (by the store's clock) and return their ids; each id is returned once."""
        ...

    async def deregister(self, instance_id: int) -> None:
        """Atomically remove the node from the heartbeats and the node list."""
        ...

    async def list_nodes(self) -> dict[int, str]:
        """Instance id → hostname of every registered node."""
        ...

    async def publish_to_node(self, instance_id: int, payload: bytes) -> None:
        """Publish to a node's inbox (nobody listening is not an error)."""
        ...

    def send_to_node(self, instance_id: int, payload: bytes) -> asyncio.Future[None]:
        """:meth:`publish_to_node` without waiting: the returned future ends once the
        message was published (or with the error). Keeps the order of publishes."""
        ...

    async def publish_broadcast(self, payload: bytes) -> None:
        """Publish to the broadcast channel."""
        ...

    def send_event(self, payload: bytes) -> asyncio.Future[None]:
        """Queue a publish to the presence-event channel, without waiting (as
        :meth:`send_to_node`); nobody listening is the normal case."""
        ...

    async def ping(self) -> None:
        """Round trip to the store; raises when it cannot be reached."""
        ...

    async def note_leader(self, instance_id: int, ttl_ms: int) -> None:
        """Record ``instance_id`` as the leader for ``ttl_ms`` (for operators' tools)."""
        ...

    async def subscribe(
        self,
        instance_id: int,
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
    ) -> None:
        """Subscribe to the node's inbox, then the broadcast channel (one subscription per
        engine). Returns once live; keeps it live (reconnecting) until :meth:`unsubscribe`."""
        ...

    async def unsubscribe(self) -> None:
        """End the subscription; no callback runs afterwards. No-op if not subscribed."""
        ...

    async def aclose(self) -> None:
        """Release every connection (unsubscribes first). Idempotent."""
        ...


class LeaderLockEngine(Protocol):
    """A lock with a time-to-live whose holder is identified by a random lock id."""

    async def acquire(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """Set the lock to ``lock_id`` with the ttl if nobody holds it; True if taken."""
        ...

    async def renew(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """Extend the ttl if ``lock_id`` still holds the lock; False = leadership lost."""
        ...

    async def release(self, key: str, lock_id: str) -> bool:
        """Delete the lock if ``lock_id`` holds it; True if it was ours."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...
