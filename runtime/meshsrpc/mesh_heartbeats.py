"""Node liveness: this node's heartbeats, its rejoin, and the leader's cleanup of dead nodes.

Every ``heartbeat_interval`` the node refreshes its heartbeat (Redis TIME). When its
entry had vanished (Redis restarted empty, or it was declared dead) it re-adds it and
reports the rejoin. Right after its own heartbeat, the leader removes the nodes whose
heartbeat is older than ``node_ttl`` and reports each once, as the TypeScript leader
does; every node then fails its calls to nodes that left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._tasks import call_sync_or_async, cancel_and_wait, raise_if_cancelling, spawn
from .engine import MeshEngine
from .mesh_node import NodeState
from .mesh_requests import MeshRequests

__all__ = ["NodeCleanedUpCallback", "NodeHeartbeats", "RejoinedCallback"]

logger = logging.getLogger("meshsrpc.mesh")

#: Called on the leader once per node it removed: cb(instance_id), sync or async.
NodeCleanedUpCallback = Callable[[int], Awaitable[None] | None]
#: Called after this node re-added its vanished entries (e.g. Redis restarted empty).
RejoinedCallback = Callable[[], Awaitable[None] | None]

# How long a stopping node lets the callbacks for dead nodes run on.
_CLEANUP_CALLBACK_GRACE = 5.0


class NodeHeartbeats:
    """The heartbeat loop of one node, and what the leader does after each beat."""

    def __init__(
        self,
        node: NodeState,
        requests: MeshRequests,
        *,
        hostname: str,
        heartbeat_interval: float,
        node_ttl: float,
        is_leader: Callable[[], bool],
    ) -> None:
        self._node = node
        self._requests = requests
        self._hostname = hostname
        self._interval = heartbeat_interval
        self._node_ttl = node_ttl
        self._is_leader = is_leader
        self.on_node_cleaned_up: NodeCleanedUpCallback | None = None
        self.on_rejoined: RejoinedCallback | None = None
        self._rejoin_pending = False
        self._last_beat: float | None = None  # loop time of the last heartbeat Redis took
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._cleanup_tasks: set[asyncio.Task[Any]] = set()

    @property
    def age(self) -> float | None:
        """Seconds since Redis last took the heartbeat; None when not running."""
        if not self._node.running or self._last_beat is None:
            return None
        return asyncio.get_running_loop().time() - self._last_beat

    async def first_beat(self, engine: MeshEngine, instance_id: int) -> None:
        """The starting node's first heartbeat (errors propagate)."""
        await engine.heartbeat(instance_id)
        self._last_beat = asyncio.get_running_loop().time()

    def start(self) -> None:
        """Beat every ``heartbeat_interval`` until :meth:`stop`."""
        node = self._node
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"meshsrpc-heartbeat {node.key}#{node.instance_id}"
        )

    async def stop(self) -> None:
        """Stop beating."""
        task, self._task = self._task, None
        await cancel_and_wait({task} if task else set())
        self._last_beat = None
        self._rejoin_pending = False

    async def finish_cleanups(self) -> None:
        """Give the callbacks for dead nodes a bounded chance to finish, then cancel them."""
        if self._cleanup_tasks:
            # Dead nodes are already gone from Redis: give their callbacks a chance.
            await asyncio.wait(set(self._cleanup_tasks), timeout=_CLEANUP_CALLBACK_GRACE)
            await cancel_and_wait(set(self._cleanup_tasks))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat, a rejoin if our entry vanished, the leader's cleanup after it."""
        node = self._node
        async with self._lock:
            engine, instance_id = node.engine, node.instance_id
            if engine is None or not node.running:
                return
            try:
                # Pending: a rejoin that failed is retried on the next beat, although
                # the heartbeat itself then finds the entry present again.
                missing = await engine.heartbeat(instance_id)
                self._last_beat = asyncio.get_running_loop().time()
                if missing or self._rejoin_pending:
                    # Our entry vanished (Redis restarted empty, or we were declared dead).
                    logger.warning(
                        "mesh %s: node %d was missing from the heartbeats; re-registering",
                        node.key,
                        instance_id,
                    )
                    self._rejoin_pending = True
                    await engine.rejoin(instance_id, self._hostname)
                    if node.link is not None:
                        await node.link.publish()
                    self._rejoin_pending = False
                    if self.on_rejoined is not None:
                        spawn(self._report_rejoined(self.on_rejoined), node.tasks)
            except Exception as exc:
                raise_if_cancelling()
                logger.warning("mesh %s: heartbeat failed: %s", node.key, exc)
                return
            if self._is_leader():
                # Right after our own heartbeat, as the TypeScript leader does.
                await self._clean_up_dead_nodes(engine)
                await self._note_leader(engine, instance_id)
            if self._requests.pending:
                await self._requests.fail_departed(engine)

    async def _note_leader(self, engine: MeshEngine, instance_id: int) -> None:
        """Tell operators' tools who leads (WIRE.md §6); gone a node TTL after we stop."""
        try:
            await engine.note_leader(instance_id, max(1, round(self._node_ttl * 1000)))
        except Exception as exc:
            raise_if_cancelling()
            logger.debug("mesh %s: could not note the leader: %s", self._node.key, exc)

    async def _clean_up_dead_nodes(self, engine: MeshEngine) -> None:
        node = self._node
        try:
            removed = await engine.cleanup_expired(max(1, round(self._node_ttl * 1000)))
        except Exception as exc:
            raise_if_cancelling()
            logger.warning("mesh %s: cleanup failed: %s", node.key, exc)
            return
        for node_id in removed:
            logger.info(
                "mesh %s: node %d is dead (no heartbeat for %.1f s); removed",
                node.key,
                node_id,
                self._node_ttl,
                extra={"mesh_key": node.key, "node_id": node.instance_id, "dead_node_id": node_id},
            )
        if removed:
            if node.link is not None:
                await node.link.forget(removed)
            # Not awaited here: a slow callback must not delay our own heartbeat.
            spawn(self._report_cleaned_up(removed), self._cleanup_tasks)

    async def _report_cleaned_up(self, removed: list[int]) -> None:
        for node_id in removed:
            callback = self.on_node_cleaned_up
            if callback is None:
                continue
            try:
                await call_sync_or_async(callback, node_id)
            except Exception:
                raise_if_cancelling()
                logger.exception(
                    "mesh %s: node-cleaned-up callback for %d failed", self._node.key, node_id
                )

    async def _report_rejoined(self, callback: RejoinedCallback) -> None:
        try:
            await call_sync_or_async(callback)
        except Exception:
            raise_if_cancelling()
            logger.exception("mesh %s: rejoined callback failed", self._node.key)
