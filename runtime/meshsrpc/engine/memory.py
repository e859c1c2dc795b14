"""The ``memory://<name>`` engine: every mesh and lock of one process in a named in-memory hub.

Several MeshService instances in one process that use the same ``memory://name``
share one mesh with the Redis engine's semantics: ids from 1, heartbeats on a
monotonic millisecond clock with ttl expiry, a leader lock with ttl, broadcasts,
and inbox delivery that is always asynchronous (scheduled on the receiver's event
loop, never run inside ``publish``). Other components keep their own per-name state
on the hub with :meth:`MemoryHub.attachment` (e.g. the memory client registry).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .base import (
    MeshKeys,
    MessageCallback,
    MessageSource,
    SubscriptionEventCallback,
)

__all__ = ["MemoryHub", "MemoryLeaderLock", "MemoryMeshEngine", "memory_hub"]

T = TypeVar("T")

_hubs: dict[str, MemoryHub] = {}
_hubs_lock = threading.Lock()


def memory_hub(name: str) -> MemoryHub:
    """The hub named ``name`` (created on first use; lives as long as the process)."""
    with _hubs_lock:
        hub = _hubs.get(name)
        if hub is None:
            hub = _hubs[name] = MemoryHub(name)
        return hub


def _now_ms() -> float:
    return time.monotonic() * 1000.0


class _Subscription:
    """One node's subscription: delivers on the loop it was created on."""

    def __init__(self, on_message: MessageCallback) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.active = True

    def post(self, source: MessageSource, payload: bytes) -> None:
        # Scheduled, never called inline: a publisher must not run receivers re-entrantly.
        try:
            same_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self.loop.call_soon(self._deliver, source, payload)
        else:
            self.loop.call_soon_threadsafe(self._deliver, source, payload)

    def _deliver(self, source: MessageSource, payload: bytes) -> None:
        if self.active:
            self.on_message(source, payload)


@dataclass
class _MeshState:
    next_id: int = 0
    heartbeats: dict[int, float] = field(default_factory=dict)
    nodes: dict[int, str] = field(default_factory=dict)
    inboxes: dict[int, _Subscription] = field(default_factory=dict)
    listeners: list[_Subscription] = field(default_factory=list)


class MemoryHub:
    """All in-memory meshes, locks and attached state of one ``memory://`` name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._meshes: dict[str, _MeshState] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._attachments: dict[str, Any] = {}

    def attachment(self, key: str, factory: Callable[[], T]) -> T:
        """Per-hub state of another component, created by ``factory`` on first use."""
        if key not in self._attachments:
            self._attachments[key] = factory()
        return cast(T, self._attachments[key])

    def _mesh(self, keys: MeshKeys) -> _MeshState:
        return self._meshes.setdefault(keys.base, _MeshState())

    def _lock_holder(self, key: str) -> str | None:
        entry = self._locks.get(key)
        if entry is None:
            return None
        if entry[1] <= _now_ms():
            del self._locks[key]
            return None
        return entry[0]


class MemoryMeshEngine:
    """:class:`~meshsrpc.engine.base.MeshEngine` on a :class:`MemoryHub`."""

    def __init__(self, hub: MemoryHub, keys: MeshKeys) -> None:
        self.keys = keys
        self._hub = hub
        self._state = hub._mesh(keys)
        self._subscription: _Subscription | None = None
        self._instance_id = 0

    async def allocate_instance_id(self) -> int:
        """The next id of this mesh (1, 2, ...)."""
        self._state.next_id += 1
        return self._state.next_id

    async def heartbeat(self, instance_id: int) -> bool:
        """Record now (monotonic ms); True if the entry was new."""
        is_new = instance_id not in self._state.heartbeats
        self._state.heartbeats[instance_id] = _now_ms()
        return is_new

    async def register_node(self, instance_id: int, hostname: str) -> None:
        """Store the hostname."""
        self._state.nodes[instance_id] = hostname

    async def rejoin(self, instance_id: int, hostname: str) -> None:
        """Hostname again; the id counter never goes below ``instance_id``."""
        self._state.nodes[instance_id] = hostname
        self._state.next_id = max(self._state.next_id, instance_id)

    async def cleanup_expired(self, node_ttl_ms: int) -> list[int]:
        """Remove and return the ids whose heartbeat is ``node_ttl_ms`` or more old."""
        limit = _now_ms() - node_ttl_ms
        expired = sorted(i for i, beat in self._state.heartbeats.items() if beat <= limit)
        for instance_id in expired:
            del self._state.heartbeats[instance_id]
            self._state.nodes.pop(instance_id, None)
        return expired

    async def deregister(self, instance_id: int) -> None:
        """Remove the node from heartbeats and the node list."""
        self._state.heartbeats.pop(instance_id, None)
        self._state.nodes.pop(instance_id, None)

    async def list_nodes(self) -> dict[int, str]:
        """Instance id → hostname."""
        return dict(self._state.nodes)

    async def publish_to_node(self, instance_id: int, payload: bytes) -> None:
        """Deliver to the node's inbox later on its loop (dropped if nobody listens)."""
        subscription = self._state.inboxes.get(instance_id)
        if subscription is not None:
            subscription.post(MessageSource.INBOX, payload)

    def send_to_node(self, instance_id: int, payload: bytes) -> asyncio.Future[None]:
        """:meth:`publish_to_node`, already done."""
        subscription = self._state.inboxes.get(instance_id)
        if subscription is not None:
            subscription.post(MessageSource.INBOX, payload)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def publish_broadcast(self, payload: bytes) -> None:
        """Deliver to every subscribed node, the sender included."""
        for subscription in list(self._state.listeners):
            subscription.post(MessageSource.BROADCAST, payload)

    def send_event(self, payload: bytes) -> asyncio.Future[None]:
        """Nobody watches an in-process mesh: dropped, already done."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def ping(self) -> None:
        """Always reachable."""

    async def note_leader(self, instance_id: int, ttl_ms: int) -> None:
        """Nobody reads it in-process."""

    async def subscribe(
        self,
        instance_id: int,
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
    ) -> None:
        """Listen on the node's inbox and the broadcast channel (never drops)."""
        if self._subscription is not None:
            raise RuntimeError("this engine already has a subscription")
        subscription = _Subscription(on_message)
        self._subscription = subscription
        self._instance_id = instance_id
        self._state.inboxes[instance_id] = subscription
        self._state.listeners.append(subscription)

    async def unsubscribe(self) -> None:
        """Stop listening; messages already scheduled are dropped too."""
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        subscription.active = False
        if self._state.inboxes.get(self._instance_id) is subscription:
            del self._state.inboxes[self._instance_id]
        self._state.listeners.remove(subscription)

    async def aclose(self) -> None:
        """Unsubscribe."""
        await self.unsubscribe()


class MemoryLeaderLock:
    """:class:`~meshsrpc.engine.base.LeaderLockEngine` on a :class:`MemoryHub`."""

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub

    async def acquire(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """Take the lock if nobody holds it (or the holder's ttl ran out)."""
        if self._hub._lock_holder(key) is not None:
            return False
        self._hub._locks[key] = (lock_id, _now_ms() + ttl_ms)
        return True

    async def renew(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """Extend the ttl if ``lock_id`` still holds the lock."""
        if self._hub._lock_holder(key) != lock_id:
            return False
        self._hub._locks[key] = (lock_id, _now_ms() + ttl_ms)
        return True

    async def release(self, key: str, lock_id: str) -> bool:
        """Drop the lock if ``lock_id`` holds it."""
        if self._hub._lock_holder(key) != lock_id:
            return False
        del self._hub._locks[key]
        return True

    def holder(self, key: str) -> str | None:
        """The lock id holding ``key`` right now (for tests and diagnostics)."""
        return self._hub._lock_holder(key)

    async def aclose(self) -> None:
        """Nothing to release."""
