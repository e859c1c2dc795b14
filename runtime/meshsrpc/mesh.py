"""MeshService: nodes that find each other, call each other's handlers, and broadcast.

Behaviour only (ids, heartbeats, cleanup by the leader, request/response with request
heartbeats, broadcasts); storage and transport are an engine's job
(:mod:`meshsrpc.engine`). The messages are the JSON of WIRE.md §1, byte for byte as
the TypeScript nodes write them (compact, insertion order, UTF-8 unescaped).

MeshService joins and leaves the mesh and routes incoming messages; its parts do the
rest: :mod:`meshsrpc.mesh_requests` (invoke and serve), :mod:`meshsrpc.mesh_heartbeats`
(liveness, rejoin, the leader's cleanup) and :mod:`meshsrpc.mesh_broadcasts`.

Work that must happen while the node is still a member (e.g. the client service
removing its own clients from the registry) simply runs before :meth:`MeshService.stop`:
the instance id, the heartbeats and invoke keep working until ``stop`` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from . import mesh_messages as messages
from ._tasks import cancel_and_wait, raise_if_cancelling, spawn
from .direct import DirectSettings, NodeLink, open_node_link
from .engine import open_mesh_engine
from .engine.base import MessageSource, SubscriptionEvent
from .errors import MeshError, MeshStoppedError
from .leader import LeaderOptions, LeaderService
from .mesh_broadcasts import BroadcastHandler, MeshBroadcasts
from .mesh_heartbeats import NodeCleanedUpCallback, NodeHeartbeats, RejoinedCallback
from .mesh_node import NodeState
from .mesh_requests import MeshHandler, MeshRequests
from .observer import MeshMessageKind, MeshObserver
from .settings import RedisLike, resolve_redis_settings

__all__ = [
    "BroadcastHandler",
    "MeshHandler",
    "MeshNode",
    "MeshService",
    "NodeCleanedUpCallback",
    "RejoinedCallback",
]

logger = logging.getLogger("meshsrpc.mesh")

# Upper bounds for each stop step, so stop() ends even when Redis is unreachable.
_STOP_STEP_TIMEOUT = 3.0
# How long start() waits for the first leader election attempt, to log the outcome.
_LEADER_FIRST_ATTEMPT_WAIT = 2.0

_Message = messages.Request | messages.Reply | messages.RequestHeartbeat | messages.Broadcast


@dataclass(frozen=True)
class MeshNode:
    """One live node of the mesh; ``self`` is True for the node that asked."""

    instance_id: int
    hostname: str
    self: bool


class MeshService:
    """One node of the mesh named ``key``: ``await start()``, then invoke and broadcast."""

    def __init__(
        self,
        key: str,
        *,
        heartbeat_interval: float = 5.0,
        node_ttl: float = 15.0,
        request_timeout: float = 10.0,
        leader: LeaderOptions | None = None,
        redis: RedisLike = None,
        direct: DirectSettings | bool | None = None,
    ) -> None:
        """``direct``: the node-to-node data plane (:class:`DirectSettings`); None reads
        the ``MESH_DIRECT_*`` environment (off without ``MESH_DIRECT_SECRET``), False
        turns it off."""
        if heartbeat_interval <= 0 or node_ttl <= 0 or request_timeout <= 0:
            raise ValueError("heartbeat_interval, node_ttl and request_timeout must be positive")
        self.key = key
        self.heartbeat_interval = heartbeat_interval
        self.node_ttl = node_ttl
        self.request_timeout = request_timeout
        # The lock follows node_ttl: a dead leader is replaced as fast as a dead node is
        # noticed (a fixed 30 s ttl delayed its own orphans' report by that much).
        self.leader_options = leader or LeaderOptions.for_node_ttl(node_ttl)
        self.hostname = socket.gethostname()
        self._redis = redis
        self._direct = direct
        self._leader: LeaderService | None = None
        self._node = NodeState(key)
        self._requests = MeshRequests(self._node)
        self._broadcasts = MeshBroadcasts(self._node)
        self._heartbeats = NodeHeartbeats(
            self._node,
            self._requests,
            hostname=self.hostname,
            heartbeat_interval=heartbeat_interval,
            node_ttl=node_ttl,
            is_leader=lambda: self.is_leader,
        )
        self._lifecycle = asyncio.Lock()

    # --- public API -----------------------------------------------------------------

    @property
    def instance_id(self) -> int:
        """This node's id in the mesh; 0 before start and after stop."""
        return self._node.instance_id

    @property
    def is_running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._node.running

    @property
    def is_leader(self) -> bool:
        """True while this node holds the mesh's cleanup leader lock."""
        return self._leader is not None and self._leader.is_leader

    @property
    def direct_link(self) -> NodeLink | None:
        """This node's direct data plane while running with it on, else None."""
        return self._node.link

    @property
    def heartbeat_age(self) -> float | None:
        """Seconds since Redis last took this node's heartbeat; None when not running."""
        return self._heartbeats.age

    @property
    def observer(self) -> MeshObserver | None:
        """Receives this node's mesh events (metrics); None = nobody, and no cost."""
        return self._node.observer

    @observer.setter
    def observer(self, observer: MeshObserver | None) -> None:
        self._node.observer = observer

    async def ping(self) -> None:
        """One round trip to Redis; raises MeshNotRunningError or the connection's error."""
        await self._node.running_engine().ping()

    def publish_event(self, event: dict[str, Any]) -> None:
        """Publish a presence event (WIRE.md §6) without waiting; a failure is logged.

        A no-op when not running. Nobody subscribes to the channel but operators'
        tools, so an event costs one pipelined PUBLISH and reaches no node.
        """
        engine = self._node.engine
        if not self._node.running or engine is None:
            return
        try:
            payload = messages.encode(event)
        except (TypeError, ValueError) as exc:
            logger.warning("mesh %s: event not published: %s", self.key, exc)
            return
        sent = engine.send_event(payload)
        sent.add_done_callback(functools.partial(_log_unsent_event, self.key, event.get("event")))

    def register_handler(self, type: str, handler: MeshHandler) -> None:
        """Answer requests of ``type`` with ``handler(data)`` (sync or async); replaces."""
        self._requests.handlers[type] = handler

    def register_broadcast_handler(self, type: str, handler: BroadcastHandler) -> None:
        """Receive broadcasts of ``type`` as ``handler(data, sender_instance_id)``; replaces."""
        self._broadcasts.handlers[type] = handler

    def set_node_cleaned_up_callback(self, callback: NodeCleanedUpCallback | None) -> None:
        """Call ``callback(instance_id)`` on the leader once for every dead node it removes."""
        self._heartbeats.on_node_cleaned_up = callback

    def set_rejoined_callback(self, callback: RejoinedCallback | None) -> None:
        """Call ``callback()`` after this node found its entries gone and re-added them.

        That happens when Redis restarted empty (or the node was declared dead): layers
        above that keep their own state in Redis (the client registry) restore it here.
        """
        self._heartbeats.on_rejoined = callback

    async def start(self) -> None:
        """Join the mesh: id, subscription, first heartbeat, node entry, leader election.

        Raises :class:`MeshError` if already running.
        """
        node = self._node
        async with self._lifecycle:
            if node.running:
                raise MeshError(f"MeshService {self.key!r} is already running")
            settings = resolve_redis_settings(self._redis)
            engine = open_mesh_engine(
                settings, self.key, health_check_interval=self.heartbeat_interval
            )
            leader = LeaderService(
                f"mesh:{self.key}",
                ttl=self.leader_options.ttl,
                renewal_interval=self.leader_options.renewal_interval,
                retry_delay=self.leader_options.retry_delay,
                redis=self._redis,
            )
            registered = False
            try:
                instance_id = await engine.allocate_instance_id()
                node.instance_id = instance_id
                node.running = True
                # Listening and advertised before the node is listed: whoever finds it
                # can call it directly from the first call on.
                node.link = await open_node_link(
                    self._direct,
                    settings,
                    self.key,
                    instance_id,
                    on_message=functools.partial(self._on_message, MessageSource.INBOX),
                    on_lost=self._requests.on_direct_lost,
                )
                await engine.subscribe(instance_id, self._on_message, self._on_subscription_event)
                node.engine = engine
                registered = True
                await self._heartbeats.first_beat(engine, instance_id)
                await engine.register_node(instance_id, self.hostname)
                leader.set_became_leader_callback(functools.partial(self._leader_changed, True))
                leader.set_lost_leader_callback(functools.partial(self._leader_changed, False))
                leader.start()
                # Bounded: an election that cannot finish must not hold up the start.
                is_leader = await leader.wait_first_attempt(_LEADER_FIRST_ATTEMPT_WAIT)
            except BaseException:
                node.running = False
                node.engine = None
                with contextlib.suppress(Exception):
                    await leader.stop()
                link, node.link = node.link, None
                if link is not None:
                    await _bounded(link.close(), "close direct channels")
                if registered:  # do not leave a half-registered node behind
                    await _bounded(engine.deregister(node.instance_id), "deregister")
                await _bounded(engine.aclose(), "close")
                node.instance_id = 0
                raise
            self._leader = leader
            self._heartbeats.start()
            # The one line that says where this node is and what it does.
            logger.info(
                "mesh %r: node %d started on %s, key prefix %r, %s",
                self.key,
                instance_id,
                settings.describe(),
                settings.key_prefix,
                "the cleanup leader" if is_leader else "not the leader",
            )

    async def stop(self) -> None:
        """Leave the mesh. Idempotent, safe before start.

        Order (as the TypeScript nodes): leave the election (release the lock if ours),
        stop timers, fail pending invokes with :class:`MeshStoppedError`, unsubscribe,
        then remove this node from the heartbeats and the node list in one step.
        """
        node = self._node
        async with self._lifecycle:
            if not node.running:
                return
            node.running = False
            engine, node.engine = node.engine, None
            leader, self._leader = self._leader, None
            instance_id = node.instance_id
            was_leader = leader is not None and leader.is_leader
            if leader is not None:
                await leader.stop()
            await self._heartbeats.stop()
            self._requests.fail_all(MeshStoppedError(f"MeshService {self.key!r} stopped"))
            current = asyncio.current_task()
            serving = self._requests.serving
            await cancel_and_wait({t for t in (*node.tasks, *serving.values()) if t is not current})
            # A handler cancelled before it started never removed itself.
            serving.clear()
            await self._heartbeats.finish_cleanups()
            link, node.link = node.link, None
            if link is not None:
                await _bounded(link.close(), "close direct channels")
            if engine is not None:
                await _bounded(engine.unsubscribe(), "unsubscribe")
                await _bounded(engine.deregister(instance_id), "deregister")
                await _bounded(engine.aclose(), "close")
            node.instance_id = 0
            if leader is not None and node.observer is not None and was_leader:
                node.observer.leader_changed(False)
            logger.info("mesh %s: node %d stopped", self.key, instance_id)

    async def invoke(
        self,
        instance_id: int,
        type: str,
        data: Any,
        timeout: float | None = None,
    ) -> Any:
        """Call the ``type`` handler on node ``instance_id`` and return its result.

        Own id: the handler runs here and its errors propagate as raised. Another node:
        raises :class:`MeshNoHandlerError`, :class:`MeshHandlerError` (the remote
        error text), :class:`MeshRequestTimeoutError` (no reply within ``timeout``,
        default ``request_timeout``; each request heartbeat restarts it) or
        :class:`MeshStoppedError`.
        """
        seconds = self.request_timeout if timeout is None else timeout
        return await self._requests.invoke(instance_id, type, data, seconds)

    async def broadcast(self, type: str, data: Any, *, skip_self: bool = False) -> None:
        """Send ``data`` to the ``type`` broadcast handler of every node.

        This node's own handler runs here, directly, unless ``skip_self``; its copy
        coming back from the channel is ignored. Handler errors are logged.
        """
        await self._broadcasts.broadcast(type, data, skip_self=skip_self)

    async def get_nodes(self) -> list[MeshNode]:
        """Every registered node, by instance id (dead ones until the leader removes them)."""
        nodes = await self._node.running_engine().list_nodes()
        return [
            MeshNode(node_id, hostname, node_id == self._node.instance_id)
            for node_id, hostname in sorted(nodes.items())
        ]

    # --- incoming messages and subscription changes -----------------------------------

    def _on_message(self, source: MessageSource, payload: bytes) -> None:
        node = self._node
        if not node.running:
            return
        message: _Message
        try:
            if source is MessageSource.BROADCAST:
                message = messages.parse_broadcast(payload)
            else:
                message = messages.parse_inbox(payload)
        except messages.InvalidMessage as exc:
            logger.warning("mesh %s: dropping message (%s): %r", self.key, exc, payload[:200])
            return
        if node.observer is not None:
            node.observer.mesh_message_in(_kind_of(message))
        if isinstance(message, messages.Broadcast):
            self._broadcasts.on_broadcast(message)
        elif isinstance(message, messages.RequestHeartbeat):
            self._requests.on_request_heartbeat(message)
        elif isinstance(message, messages.Reply):
            self._requests.on_reply(message)
        else:
            self._requests.on_request(message, self.request_timeout)

    def _on_subscription_event(self, event: SubscriptionEvent) -> None:
        node = self._node
        if not node.running:
            return
        if event is SubscriptionEvent.LOST:
            # Replies published while we are not subscribed are gone for good.
            self._requests.fail_sent_through_redis(
                MeshError(f"mesh {self.key!r}: connection to Redis lost while waiting for a reply")
            )
        elif event is SubscriptionEvent.RESTORED:
            if node.observer is not None:
                node.observer.redis_reconnected()
            spawn(self._heartbeats.beat(), node.tasks)

    def _leader_changed(self, is_leader: bool) -> None:
        if self._node.observer is not None:
            self._node.observer.leader_changed(is_leader)


def _kind_of(message: _Message) -> MeshMessageKind:
    if isinstance(message, messages.Request):
        return "request"
    if isinstance(message, messages.Reply):
        return "reply"
    if isinstance(message, messages.RequestHeartbeat):
        return "heartbeat"
    return "broadcast"


def _log_unsent_event(key: str, what: Any, sent: asyncio.Future[None]) -> None:
    exc = None if sent.cancelled() else sent.exception()
    if exc is not None:
        logger.debug("mesh %s: could not publish event %s: %s", key, what, exc)


async def _bounded(step: Awaitable[None], what: str) -> None:
    try:
        async with asyncio.timeout(_STOP_STEP_TIMEOUT):
            await step
    except Exception as exc:
        raise_if_cancelling()
        logger.warning("mesh stop: %s failed: %s", what, exc)
