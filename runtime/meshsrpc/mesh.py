"""MeshService: nodes that find each other, call each other's handlers, and broadcast.

Behaviour only (ids, heartbeats, cleanup by the leader, request/response with request
heartbeats, broadcasts); storage and transport are an engine's job
(:mod:`meshsrpc.engine`). The messages are the JSON of WIRE.md §1, byte for byte as
the TypeScript nodes write them (compact, insertion order, UTF-8 unescaped).

Work that must happen while the node is still a member (e.g. the client service
removing its own clients from the registry) simply runs before :meth:`MeshService.stop`:
the instance id, the heartbeats and invoke keep working until ``stop`` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import math
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import mesh_messages as messages
from ._deadlines import Deadlines
from ._tasks import cancel_and_wait, raise_if_cancelling
from .direct import Channel, DirectSettings, NodeLink, open_node_link
from .engine import MeshEngine, open_mesh_engine
from .engine.base import MessageSource, SubscriptionEvent
from .errors import (
    MeshConnectionLostError,
    MeshError,
    MeshNoHandlerError,
    MeshNotRunningError,
    MeshRequestTimeoutError,
    MeshStoppedError,
)
from .leader import LeaderOptions, LeaderService
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

#: A request handler: handler(data) -> JSON-able result, sync or async.
MeshHandler = Callable[[Any], Any]
#: A broadcast handler: handler(data, sender_instance_id), sync or async.
BroadcastHandler = Callable[[Any, int], Any]
#: Called on the leader once per node it removed: cb(instance_id), sync or async.
NodeCleanedUpCallback = Callable[[int], Awaitable[None] | None]
#: Called after this node re-added its vanished entries (e.g. Redis restarted empty).
RejoinedCallback = Callable[[], Awaitable[None] | None]

# Heartbeats are sent every 0.75 x the caller's timeout, as the TypeScript nodes do.
_REQUEST_HEARTBEAT_RATIO = 0.75
# Upper bounds for each stop step, so stop() ends even when Redis is unreachable.
_STOP_STEP_TIMEOUT = 3.0
_CLEANUP_CALLBACK_GRACE = 5.0
# How long start() waits for the first leader election attempt, to log the outcome.
_LEADER_FIRST_ATTEMPT_WAIT = 2.0


@dataclass(frozen=True)
class MeshNode:
    """One live node of the mesh; ``self`` is True for the node that asked."""

    instance_id: int
    hostname: str
    self: bool


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _call(handler: Callable[..., Any], *args: Any) -> Any:
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class _PendingRequest:
    """A remote invoke waiting for its reply; its timeout restarts on each request heartbeat."""

    __slots__ = (
        "_timeouts",
        "future",
        "instance_id",
        "loop",
        "payload",
        "target_missing",
        "target_seen",
        "timeout",
        "type",
        "via",
        "via_batch",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeouts: Deadlines[_PendingRequest],
        instance_id: int,
        type: str,
        timeout: float,
    ) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.instance_id = instance_id
        self.type = type
        self.timeout = timeout
        # Whether a beat saw the target in the node list, and how many beats in a
        # row found it missing since.
        self.target_seen = False
        self.target_missing = 0
        self._timeouts = timeouts
        #: The direct connection the request was written to; None: sent through Redis.
        self.via: Channel | None = None
        self.via_batch = 0
        self.payload = b""

    def arm(self) -> None:
        """(Re)start the timeout from now."""
        if not self.future.done():
            self._timeouts.set(self, self.loop.time() + self.timeout)

    def disarm(self) -> None:
        self._timeouts.discard(self)

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)
        self.disarm()

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
        self.disarm()

    def expire(self) -> None:
        """The timeout passed without a reply or a request heartbeat."""
        self.fail(MeshRequestTimeoutError(self.instance_id, self.type))

    def on_sent(self, sent: asyncio.Future[None]) -> None:
        """The publish of the request ended: fail the call if it could not be sent."""
        exc = None if sent.cancelled() else sent.exception()
        if exc is not None and not self.future.done():
            error = MeshError(
                f"could not send mesh request {self.type!r} to node {self.instance_id}: {exc}"
            )
            error.__cause__ = exc
            self.fail(error)


class _Serving:
    """A request whose handler runs here: the caller gets a heartbeat every ``interval``."""

    __slots__ = ("interval", "request_id", "sender")

    def __init__(self, sender: int, request_id: str, interval: float) -> None:
        self.sender = sender
        self.request_id = request_id
        self.interval = interval


class _RequestIds:
    """Request ids in the uuid4 format: a random prefix per process and a counter.

    Unique per process like uuid4 (no late reply can match a newer request), unique
    across processes by the prefix's 74 random bits, and a fraction of uuid4's cost.
    """

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._counter = itertools.count(1)

    def next(self) -> str:
        """The next id."""
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


_request_ids = _RequestIds()


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
        self._link: NodeLink | None = None
        self._instance_id = 0
        self._running = False
        self._engine: MeshEngine | None = None
        self._leader: LeaderService | None = None
        self._handlers: dict[str, MeshHandler] = {}
        self._broadcast_handlers: dict[str, BroadcastHandler] = {}
        self._on_node_cleaned_up: NodeCleanedUpCallback | None = None
        self._on_rejoined: RejoinedCallback | None = None
        self._rejoin_pending = False
        self._pending: dict[str, _PendingRequest] = {}
        self._timeouts: Deadlines[_PendingRequest] = Deadlines(_PendingRequest.expire)
        self._beats: Deadlines[_Serving] = Deadlines(self._beat_request)
        self._tasks: set[asyncio.Task[Any]] = set()
        # Handlers of requests from other nodes, by id() of their request: each leaves
        # itself when done (no done callback, one loop iteration less per request).
        self._serving: dict[int, asyncio.Task[None]] = {}
        self._cleanup_tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()
        self._beat_lock = asyncio.Lock()
        #: Receives this node's mesh events (metrics); None = nobody, and no cost.
        self.observer: MeshObserver | None = None
        self._last_beat: float | None = None  # loop time of the last heartbeat Redis took

    # --- public API -----------------------------------------------------------------

    @property
    def instance_id(self) -> int:
        """This node's id in the mesh; 0 before start and after stop."""
        return self._instance_id

    @property
    def is_running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def is_leader(self) -> bool:
        """True while this node holds the mesh's cleanup leader lock."""
        return self._leader is not None and self._leader.is_leader

    @property
    def direct_link(self) -> NodeLink | None:
        """This node's direct data plane while running with it on, else None."""
        return self._link

    @property
    def heartbeat_age(self) -> float | None:
        """Seconds since Redis last took this node's heartbeat; None when not running."""
        if not self._running or self._last_beat is None:
            return None
        return asyncio.get_running_loop().time() - self._last_beat

    async def ping(self) -> None:
        """One round trip to Redis; raises MeshNotRunningError or the connection's error."""
        engine = self._engine
        if not self._running or engine is None:
            raise MeshNotRunningError(f"MeshService {self.key!r} is not running")
        await engine.ping()

    def publish_event(self, event: dict[str, Any]) -> None:
        """Publish a presence event (WIRE.md §6) without waiting; a failure is logged.

        A no-op when not running. Nobody subscribes to the channel but operators'
        tools, so an event costs one pipelined PUBLISH and reaches no node.
        """
        engine = self._engine
        if not self._running or engine is None:
            return
        try:
            payload = messages.encode(event)
        except (TypeError, ValueError) as exc:
            logger.warning("mesh %s: event not published: %s", self.key, exc)
            return
        sent = engine.send_event(payload)
        sent.add_done_callback(functools.partial(self._log_unsent_event, event.get("event")))

    def _log_unsent_event(self, what: Any, sent: asyncio.Future[None]) -> None:
        exc = None if sent.cancelled() else sent.exception()
        if exc is not None:
            logger.debug("mesh %s: could not publish event %s: %s", self.key, what, exc)

    def register_handler(self, type: str, handler: MeshHandler) -> None:
        """Answer requests of ``type`` with ``handler(data)`` (sync or async); replaces."""
        self._handlers[type] = handler

    def register_broadcast_handler(self, type: str, handler: BroadcastHandler) -> None:
        """Receive broadcasts of ``type`` as ``handler(data, sender_instance_id)``; replaces."""
        self._broadcast_handlers[type] = handler

    def set_node_cleaned_up_callback(self, callback: NodeCleanedUpCallback | None) -> None:
        """Call ``callback(instance_id)`` on the leader once for every dead node it removes."""
        self._on_node_cleaned_up = callback

    def set_rejoined_callback(self, callback: RejoinedCallback | None) -> None:
        """Call ``callback()`` after this node found its entries gone and re-added them.

        That happens when Redis restarted empty (or the node was declared dead): layers
        above that keep their own state in Redis (the client registry) restore it here.
        """
        self._on_rejoined = callback

    async def start(self) -> None:
        """Join the mesh: id, subscription, first heartbeat, node entry, leader election.

        Raises :class:`MeshError` if already running.
        """
        async with self._lifecycle:
            if self._running:
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
                self._instance_id = instance_id
                self._rejoin_pending = False
                self._running = True
                # Listening and advertised before the node is listed: whoever finds it
                # can call it directly from the first call on.
                self._link = await open_node_link(
                    self._direct,
                    settings,
                    self.key,
                    instance_id,
                    on_message=functools.partial(self._on_message, MessageSource.INBOX),
                    on_lost=self._on_direct_lost,
                )
                await engine.subscribe(instance_id, self._on_message, self._on_subscription_event)
                self._engine = engine
                registered = True
                await engine.heartbeat(instance_id)
                self._last_beat = asyncio.get_running_loop().time()
                await engine.register_node(instance_id, self.hostname)
                leader.set_became_leader_callback(functools.partial(self._leader_changed, True))
                leader.set_lost_leader_callback(functools.partial(self._leader_changed, False))
                leader.start()
                # Bounded: an election that cannot finish must not hold up the start.
                is_leader = await leader.wait_first_attempt(_LEADER_FIRST_ATTEMPT_WAIT)
            except BaseException:
                self._running = False
                self._engine = None
                with contextlib.suppress(Exception):
                    await leader.stop()
                link, self._link = self._link, None
                if link is not None:
                    await _bounded(link.close(), "close direct channels")
                if registered:  # do not leave a half-registered node behind
                    await _bounded(engine.deregister(self._instance_id), "deregister")
                await _bounded(engine.aclose(), "close")
                self._instance_id = 0
                raise
            self._leader = leader
            self._heartbeat_task = asyncio.get_running_loop().create_task(
                self._heartbeat_loop(), name=f"meshsrpc-heartbeat {self.key}#{instance_id}"
            )
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
        async with self._lifecycle:
            if not self._running:
                return
            self._running = False
            engine, self._engine = self._engine, None
            leader, self._leader = self._leader, None
            instance_id = self._instance_id
            was_leader = leader is not None and leader.is_leader
            if leader is not None:
                await leader.stop()
            heartbeat_task, self._heartbeat_task = self._heartbeat_task, None
            await cancel_and_wait({heartbeat_task} if heartbeat_task else set())
            stopped = MeshStoppedError(f"MeshService {self.key!r} stopped")
            for pending in list(self._pending.values()):
                pending.fail(stopped)
            self._pending.clear()
            self._timeouts.clear()
            self._beats.clear()
            current = asyncio.current_task()
            await cancel_and_wait(
                {t for t in (*self._tasks, *self._serving.values()) if t is not current}
            )
            # A handler cancelled before it started never removed itself.
            self._serving.clear()
            if self._cleanup_tasks:
                # Dead nodes are already gone from Redis: give their callbacks a chance.
                await asyncio.wait(set(self._cleanup_tasks), timeout=_CLEANUP_CALLBACK_GRACE)
                await cancel_and_wait(set(self._cleanup_tasks))
            link, self._link = self._link, None
            if link is not None:
                await _bounded(link.close(), "close direct channels")
            if engine is not None:
                await _bounded(engine.unsubscribe(), "unsubscribe")
                await _bounded(engine.deregister(instance_id), "deregister")
                await _bounded(engine.aclose(), "close")
            self._instance_id = 0
            self._last_beat = None
            if leader is not None and self.observer is not None and was_leader:
                self.observer.leader_changed(False)
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
        engine = self._engine
        if not self._running or engine is None:
            raise MeshNotRunningError(f"MeshService {self.key!r} is not running")
        if instance_id == self._instance_id:
            handler = self._handlers.get(type)
            if handler is None:
                raise MeshNoHandlerError(type)
            return await _call(handler, data)
        seconds = self.request_timeout if timeout is None else timeout
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError("timeout must be a positive finite number")
        link = self._link
        while link is not None and (congested := link.congested(instance_id)) is not None:
            # Backpressure: wait while the peer reads too slowly (bounded: a stalled
            # connection is dropped, and this call then goes through Redis).
            await congested.wait_writable()
            link, engine = self._link, self._engine
            if not self._running or engine is None:
                raise MeshStoppedError(f"MeshService {self.key!r} stopped")
        request_id = _request_ids.next()
        timeout_ms = messages.timeout_ms_to_wire(seconds)
        payload = messages.request(request_id, self._instance_id, type, data, timeout_ms)
        pending = _PendingRequest(
            asyncio.get_running_loop(), self._timeouts, instance_id, type, seconds
        )
        self._pending[request_id] = pending
        pending.arm()
        # Not awaited: the reply (or the timer, if the publish hangs) ends the wait, so
        # the caller wakes once per invoke; a failed publish fails it through on_sent.
        link = self._link
        if link is None or (via := link.send(instance_id, payload)) is None:
            engine.send_to_node(instance_id, payload).add_done_callback(pending.on_sent)
        else:
            pending.via, pending.via_batch, pending.payload = via, via.batch, payload
        if self.observer is not None:
            self.observer.mesh_message_out("request")
        try:
            return await pending.future
        finally:
            pending.disarm()
            self._pending.pop(request_id, None)

    async def broadcast(self, type: str, data: Any, *, skip_self: bool = False) -> None:
        """Send ``data`` to the ``type`` broadcast handler of every node.

        This node's own handler runs here, directly, unless ``skip_self``; its copy
        coming back from the channel is ignored. Handler errors are logged.
        """
        engine = self._engine
        if not self._running or engine is None:
            raise MeshNotRunningError(f"MeshService {self.key!r} is not running")
        sender = self._instance_id
        payload = messages.broadcast(sender, type, data)
        try:
            await engine.publish_broadcast(payload)
        except Exception as exc:
            raise_if_cancelling()
            raise MeshError(f"could not broadcast {type!r}: {exc}") from exc
        if self.observer is not None:
            self.observer.mesh_message_out("broadcast")
        if not skip_self:
            handler = self._broadcast_handlers.get(type)
            if handler is not None:
                await self._run_broadcast_handler(handler, type, data, sender)

    async def get_nodes(self) -> list[MeshNode]:
        """Every registered node, by instance id (dead ones until the leader removes them)."""
        engine = self._engine
        if not self._running or engine is None:
            raise MeshNotRunningError(f"MeshService {self.key!r} is not running")
        nodes = await engine.list_nodes()
        return [
            MeshNode(node_id, hostname, node_id == self._instance_id)
            for node_id, hostname in sorted(nodes.items())
        ]

    # --- heartbeats and cleanup -----------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self._beat()

    async def _beat(self) -> None:
        async with self._beat_lock:
            engine, instance_id = self._engine, self._instance_id
            if engine is None or not self._running:
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
                        self.key,
                        instance_id,
                    )
                    self._rejoin_pending = True
                    await engine.rejoin(instance_id, self.hostname)
                    if self._link is not None:
                        await self._link.publish()
                    self._rejoin_pending = False
                    if self._on_rejoined is not None:
                        self._spawn(self._report_rejoined(self._on_rejoined), self._tasks)
            except Exception as exc:
                raise_if_cancelling()
                logger.warning("mesh %s: heartbeat failed: %s", self.key, exc)
                return
            if self.is_leader:
                # Right after our own heartbeat, as the TypeScript leader does.
                await self._clean_up_dead_nodes(engine)
                await self._note_leader(engine, instance_id)
            if self._pending:
                await self._fail_requests_to_departed_nodes(engine)

    async def _note_leader(self, engine: MeshEngine, instance_id: int) -> None:
        """Tell operators' tools who leads (WIRE.md §6); gone a node TTL after we stop."""
        try:
            await engine.note_leader(instance_id, max(1, round(self.node_ttl * 1000)))
        except Exception as exc:
            raise_if_cancelling()
            logger.debug("mesh %s: could not note the leader: %s", self.key, exc)

    async def _clean_up_dead_nodes(self, engine: MeshEngine) -> None:
        try:
            removed = await engine.cleanup_expired(max(1, round(self.node_ttl * 1000)))
        except Exception as exc:
            raise_if_cancelling()
            logger.warning("mesh %s: cleanup failed: %s", self.key, exc)
            return
        for node_id in removed:
            logger.info(
                "mesh %s: node %d is dead (no heartbeat for %.1f s); removed",
                self.key,
                node_id,
                self.node_ttl,
                extra={"mesh_key": self.key, "node_id": self._instance_id, "dead_node_id": node_id},
            )
        if removed:
            if self._link is not None:
                await self._link.forget(removed)
            # Not awaited here: a slow callback must not delay our own heartbeat.
            self._spawn(self._report_cleaned_up(removed), self._cleanup_tasks)

    async def _report_cleaned_up(self, removed: list[int]) -> None:
        for node_id in removed:
            callback = self._on_node_cleaned_up
            if callback is None:
                continue
            try:
                await _call(callback, node_id)
            except Exception:
                raise_if_cancelling()
                logger.exception(
                    "mesh %s: node-cleaned-up callback for %d failed", self.key, node_id
                )

    async def _fail_requests_to_departed_nodes(self, engine: MeshEngine) -> None:
        """Fail calls to nodes that left the mesh (e.g. crashed and were cleaned up).

        Without this, a call to a dead node waits for its whole timeout, however long.
        A target must have been listed, then be missing on two beats in a row: right
        after Redis restarted empty, live nodes are missing until their next heartbeat
        re-adds them. (A target never listed keeps the plain timeout.)
        """
        try:
            live = await engine.list_nodes()
        except Exception as exc:
            raise_if_cancelling()
            logger.debug("mesh %s: could not list nodes: %s", self.key, exc)
            return
        for pending in list(self._pending.values()):
            if pending.instance_id in live:
                pending.target_seen = True
                pending.target_missing = 0
                continue
            pending.target_missing += 1
            if pending.target_seen and pending.target_missing >= 2:
                pending.fail(MeshRequestTimeoutError(pending.instance_id, pending.type))

    async def _report_rejoined(self, callback: RejoinedCallback) -> None:
        try:
            await _call(callback)
        except Exception:
            raise_if_cancelling()
            logger.exception("mesh %s: rejoined callback failed", self.key)

    def _on_subscription_event(self, event: SubscriptionEvent) -> None:
        if not self._running:
            return
        if event is SubscriptionEvent.LOST:
            # Replies published while we are not subscribed are gone for good.
            lost = MeshError(
                f"mesh {self.key!r}: connection to Redis lost while waiting for a reply"
            )
            for pending in list(self._pending.values()):
                if pending.via is None:  # replies to direct calls come back directly
                    pending.fail(lost)
        elif event is SubscriptionEvent.RESTORED:
            if self.observer is not None:
                self.observer.redis_reconnected()
            self._spawn(self._beat(), self._tasks)

    # --- incoming messages ----------------------------------------------------------

    def _on_message(self, source: MessageSource, payload: bytes) -> None:
        if not self._running:
            return
        message: messages.Request | messages.Reply | messages.RequestHeartbeat | messages.Broadcast
        try:
            if source is MessageSource.BROADCAST:
                message = messages.parse_broadcast(payload)
            else:
                message = messages.parse_inbox(payload)
        except messages.InvalidMessage as exc:
            logger.warning("mesh %s: dropping message (%s): %r", self.key, exc, payload[:200])
            return
        if self.observer is not None:
            self.observer.mesh_message_in(_kind_of(message))
        if isinstance(message, messages.Broadcast):
            self._on_broadcast(message)
        elif isinstance(message, messages.RequestHeartbeat):
            self._on_request_heartbeat(message)
        elif isinstance(message, messages.Reply):
            self._on_reply(message)
        else:
            timeout_ms = message.timeout_ms or self.request_timeout * 1000
            task = asyncio.get_running_loop().create_task(self._serve(message, timeout_ms / 1000))
            self._serving[id(message)] = task

    async def _serve(self, request: messages.Request, caller_timeout: float) -> None:
        try:
            handler = self._handlers.get(request.type)
            if handler is None:
                payload = messages.no_handler_reply(request.request_id, request.type)
            else:
                # A deadline, not a task or a timer each: most handlers answer long before
                # the first beat is due.
                interval = max(caller_timeout * _REQUEST_HEARTBEAT_RATIO, 0.01)
                serving = _Serving(request.sender, request.request_id, interval)
                self._beats.set(serving, asyncio.get_running_loop().time() + interval)
                try:
                    # As _call(), without its coroutine frame on every resumption.
                    result = handler(request.data)
                    if inspect.isawaitable(result):
                        result = await result
                except Exception as exc:
                    raise_if_cancelling()
                    payload = messages.error_reply(request.request_id, _error_text(exc))
                else:
                    try:
                        payload = messages.reply(request.request_id, result)
                    except (TypeError, ValueError, RecursionError) as exc:
                        text = (
                            f"mesh handler {request.type!r} returned a value that is not JSON:"
                            f" {exc}"
                        )
                        payload = messages.error_reply(request.request_id, text)
                finally:
                    self._beats.discard(serving)
            # Not awaited: this task is done once the reply is queued (one wake-up less).
            self._send_to_node(request.sender, payload, "reply")
            if self.observer is not None:
                self.observer.mesh_message_out("reply")
        except Exception:
            # Nothing of a peer's request may end this task with an unretrieved error.
            raise_if_cancelling()
            logger.exception(
                "mesh %s: could not answer request %r from node %d",
                self.key,
                request.request_id,
                request.sender,
            )
        finally:
            self._serving.pop(id(request), None)

    def _beat_request(self, serving: _Serving) -> None:
        self._beats.set(serving, asyncio.get_running_loop().time() + serving.interval)
        # Not awaited: a slow publish must not delay the next beat.
        payload = messages.request_heartbeat(serving.request_id)
        self._send_to_node(serving.sender, payload, "request heartbeat")
        if self.observer is not None:
            self.observer.mesh_message_out("heartbeat")

    def _send_to_node(self, instance_id: int, payload: bytes, what: str) -> None:
        """Queue a publish to a node; a failure is logged, nobody waits for it."""
        link = self._link
        if link is not None and link.send(instance_id, payload) is not None:
            return
        engine = self._engine
        if engine is None:
            return
        sent = engine.send_to_node(instance_id, payload)
        sent.add_done_callback(functools.partial(self._log_unsent, instance_id, what))

    def _log_unsent(self, instance_id: int, what: str, sent: asyncio.Future[None]) -> None:
        exc = None if sent.cancelled() else sent.exception()
        if exc is not None:
            logger.warning(
                "mesh %s: could not send a %s to node %d: %s", self.key, what, instance_id, exc
            )

    def _on_direct_lost(self, channel: Channel) -> None:
        """A direct connection dropped: calls written to it fail now, never resent; calls
        still queued in it (never written) go through Redis."""
        engine = self._engine
        for pending in list(self._pending.values()):
            if pending.via is not channel:
                continue
            pending.via = None
            if pending.via_batch > channel.flushed and engine is not None:
                sent = engine.send_to_node(pending.instance_id, pending.payload)
                sent.add_done_callback(pending.on_sent)
            else:
                pending.fail(MeshConnectionLostError(pending.instance_id, pending.type))

    def _on_request_heartbeat(self, message: messages.RequestHeartbeat) -> None:
        pending = self._pending.get(message.request_id)
        if pending is None:
            logger.debug("mesh %s: heartbeat for unknown request %r", self.key, message)
            return
        pending.arm()

    def _on_reply(self, message: messages.Reply) -> None:
        pending = self._pending.get(message.request_id)
        if pending is None:
            logger.debug("mesh %s: reply for unknown request %r", self.key, message)
        elif message.error is None:
            pending.resolve(message.data)
        else:
            pending.fail(messages.reply_error(message.error))

    def _on_broadcast(self, message: messages.Broadcast) -> None:
        if message.sender == self._instance_id:
            return  # our own copy: delivered locally when it was sent
        handler = self._broadcast_handlers.get(message.type)
        if handler is None:
            logger.debug("mesh %s: no broadcast handler for %r", self.key, message.type)
            return
        self._spawn(
            self._run_broadcast_handler(handler, message.type, message.data, message.sender),
            self._tasks,
        )

    async def _run_broadcast_handler(
        self, handler: BroadcastHandler, type: str, data: Any, sender: int
    ) -> None:
        try:
            await _call(handler, data, sender)
        except Exception:
            raise_if_cancelling()
            logger.exception("mesh %s: broadcast handler for %r failed", self.key, type)

    def _leader_changed(self, is_leader: bool) -> None:
        if self.observer is not None:
            self.observer.leader_changed(is_leader)

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], tasks: set[asyncio.Task[Any]]
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task


def _kind_of(
    message: messages.Request | messages.Reply | messages.RequestHeartbeat | messages.Broadcast,
) -> MeshMessageKind:
    if isinstance(message, messages.Request):
        return "request"
    if isinstance(message, messages.Reply):
        return "reply"
    if isinstance(message, messages.RequestHeartbeat):
        return "heartbeat"
    return "broadcast"


async def _bounded(step: Awaitable[None], what: str) -> None:
    try:
        async with asyncio.timeout(_STOP_STEP_TIMEOUT):
            await step
    except Exception as exc:
        raise_if_cancelling()
        logger.warning("mesh stop: %s failed: %s", what, exc)
