"""What the single-instance and the Redis Cluster engines share, written once.

Both run the same Lua scripts over the same (or, on a cluster, hash-tagged) mesh keys,
keep a pub/sub connection alive the same way (PING when idle, re-subscribe with
backoff, LOST/RESTORED to the mesh) and take the leader lock with the same scripts.
They differ in the client (``Redis`` or ``RedisCluster``), in pub/sub (``PUBLISH`` on
one connection or ``SPUBLISH`` per shard) and in a cluster client's wait for its slot
map (``ready``), which the single-instance engine does not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._lua import lua_source
from .._tasks import cancel_and_wait, raise_if_cancelling
from ..errors import MeshConnectionError
from ..settings import RedisSettings
from .base import MeshKeys, MessageCallback, SubscriptionEventCallback, decode_nodes

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript

__all__ = [
    "CONNECT_TIMEOUT",
    "SOCKET_TIMEOUT",
    "KeptSubscription",
    "QueuedPublisher",
    "RedisEngineCommands",
    "RedisLeaderLockScripts",
    "always_ready",
    "command_options",
    "reply_kind",
    "subscriber_options",
]

logger = logging.getLogger("meshsrpc.engine.redis")

_PACKAGE = __name__.rpartition(".")[0]
# Bounded so that a command against a dead or paused Redis fails in seconds, not minutes.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0
_RESUBSCRIBE_BACKOFF_MIN = 0.05
_RESUBSCRIBE_BACKOFF_MAX = 1.0
_PONG_TIMEOUT_MIN = 3.0

#: Waits until the client can send commands (a cluster client: its slot map is loaded).
Ready = Callable[[], Awaitable[None]]


def command_options() -> dict[str, Any]:
    """Options of a command client: a short retry, so a command issued just after Redis
    came back succeeds, and one issued while it is down fails fast (the caller, a timer
    or an invoke, decides what to do)."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    }


def subscriber_options() -> dict[str, Any]:
    """Options of a pub/sub connection: no retries inside redis-py (the subscription
    owns reconnecting), RESP2 as the TypeScript nodes (messages are plain replies, not
    push frames)."""
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        "protocol": 2,
    }


async def always_ready() -> None:
    """A plain Redis client needs nothing before its first command."""


def load_script(client: Redis | RedisCluster, name: str) -> AsyncScript:
    """The engine's ``<name>.lua``; register_script runs EVALSHA and reloads the body on
    NOSCRIPT (e.g. after a restart)."""
    return client.register_script(lua_source(_PACKAGE, name))


def reply_kind(reply: Any) -> bytes | None:
    """The lower-case kind of a pub/sub reply (``b"message"``, ``b"subscribe"``...)."""
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].lower()
    return None


#: One message waiting to be published: channel, payload, and its caller's future.
Queued = tuple[str, bytes, "asyncio.Future[None]"]


def fail_queued(batch: list[Queued], exc: BaseException) -> None:
    """End the futures of ``batch`` not ended yet with ``exc`` (a connection error
    instead of a cancellation)."""
    error = exc if isinstance(exc, Exception) else RedisConnectionError("mesh publisher stopped")
    for _, _, done in batch:
        if not done.done():
            done.set_exception(error)


class QueuedPublisher:
    """Publishes in the order sent: one task takes whatever is queued and publishes it
    (:meth:`_publish`), while the next batch queues up. The task stays for the engine's
    life: with one message at a time, starting a task per publish would cost more."""

    _task_name = "meshsrpc-publisher"

    def __init__(self) -> None:
        self._queue: list[Queued] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None

    def send(self, channel: str, payload: bytes) -> asyncio.Future[None]:
        """Queue a publish; the future ends when Redis confirmed it (or with the error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((channel, payload, done))
        if self._task is None:
            self._task = loop.create_task(self._run(), name=self._task_name)
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        return done

    async def aclose(self) -> None:
        """Stop publishing; queued messages fail with a connection error."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        fail_queued(self._queue, RedisConnectionError("mesh publisher closed"))
        self._queue = []

    async def _open(self) -> None:
        """Before the first batch (e.g. take a connection)."""

    async def _publish(self, batch: list[Queued]) -> None:
        """Publish ``batch`` in order, ending each message's future."""
        raise NotImplementedError

    async def _close(self) -> None:
        """When the task ends (e.g. give the connection back)."""

    async def _run(self) -> None:
        try:
            await self._open()
            loop = asyncio.get_running_loop()
            while True:
                if not self._queue:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    self._wakeup = None
                batch, self._queue = self._queue, []
                try:
                    await self._publish(batch)
                except BaseException as exc:
                    fail_queued(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
        except BaseException as exc:
            queued, self._queue = self._queue, []
            fail_queued(queued, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._task = None
            self._wakeup = None
            await self._close()


class _Subscription(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


class RedisEngineCommands:
    """The :class:`~meshsrpc.engine.base.MeshEngine` methods both Redis engines run alike:
    the node scripts and hashes on the command client, and the publisher's queue."""

    #: Errors that mean Redis could not be reached at all.
    unreachable: tuple[type[BaseException], ...] = (
        RedisConnectionError,
        RedisTimeoutError,
        OSError,
    )

    def __init__(
        self,
        settings: RedisSettings,
        keys: MeshKeys,
        client: Redis | RedisCluster,
        ready: Ready,
        publisher: QueuedPublisher,
        health_check_interval: float,
    ) -> None:
        self.keys = keys
        self._health_check_interval = health_check_interval
        self._settings = settings
        self._client = client
        self._ready = ready
        self._heartbeat = load_script(client, "heartbeat")
        self._cleanup = load_script(client, "cleanup")
        self._deregister = load_script(client, "deregister")
        self._rejoin = load_script(client, "rejoin")
        self._publisher = publisher
        self._subscriber: _Subscription | None = None
        self._closed = False

    async def allocate_instance_id(self) -> int:
        """INCR ``next_id``; :class:`MeshConnectionError` when Redis cannot be reached.

        The first command of a starting node, so its failure says where Redis was
        looked for.
        """
        # Plain INCR (redis-py's incr() sends INCRBY key 1), as in the capture.
        command: Any = self._client.execute_command
        try:
            await self._ready()
            return int(await command("INCR", self.keys.next_id))
        except self.unreachable as exc:
            settings = self._settings
            raise MeshConnectionError(
                f"cannot reach Redis at {settings.describe()}{settings.origin()}: {exc}"
            ) from exc

    async def heartbeat(self, instance_id: int) -> bool:
        """Run the heartbeat script (Redis TIME); True if the entry was new."""
        await self._ready()
        added = await self._heartbeat(keys=[self.keys.heartbeats], args=[instance_id])
        return int(added) == 1

    async def register_node(self, instance_id: int, hostname: str) -> None:
        """HSET ``nodes`` id hostname."""
        await self._ready()
        await self._client.hset(self.keys.nodes, str(instance_id), hostname)

    async def rejoin(self, instance_id: int, hostname: str) -> None:
        """Hostname again, and ``next_id`` raised to at least ``instance_id``, atomically."""
        await self._ready()
        await self._rejoin(keys=[self.keys.nodes, self.keys.next_id], args=[instance_id, hostname])

    async def cleanup_expired(self, node_ttl_ms: int) -> list[int]:
        """Run the cleanup script; the ids it removed."""
        await self._ready()
        removed = await self._cleanup(
            keys=[self.keys.heartbeats, self.keys.nodes], args=[node_ttl_ms]
        )
        # The script has removed them all: a member that is no node id (written by hand
        # or a broken peer) is skipped, never allowed to lose the real nodes' report.
        ids: list[int] = []
        for member in removed:
            try:
                ids.append(int(member))
            except ValueError:
                logger.warning("mesh %s: skipping heartbeat member %r", self.keys.key, member)
        return ids

    async def deregister(self, instance_id: int) -> None:
        """Run the deregister script (ZREM + HDEL)."""
        await self._ready()
        await self._deregister(keys=[self.keys.heartbeats, self.keys.nodes], args=[instance_id])

    async def list_nodes(self) -> dict[int, str]:
        """HGETALL ``nodes``."""
        await self._ready()
        return decode_nodes(await self._client.hgetall(self.keys.nodes))

    async def note_leader(self, instance_id: int, ttl_ms: int) -> None:
        """SET ``leader`` id PX ttl."""
        await self._ready()
        await self._client.set(self.keys.leader, str(instance_id), px=ttl_ms)

    async def publish_to_node(self, instance_id: int, payload: bytes) -> None:
        """Publish to ``node:<id>``; returns once Redis confirmed it."""
        await self._publisher.send(self.keys.inbox(instance_id), payload)

    def send_to_node(self, instance_id: int, payload: bytes) -> asyncio.Future[None]:
        """Queue a publish to ``node:<id>``; the future ends when Redis confirmed it."""
        return self._publisher.send(self.keys.inbox(instance_id), payload)

    async def publish_broadcast(self, payload: bytes) -> None:
        """Publish to ``broadcast``; returns once Redis confirmed it."""
        await self._publisher.send(self.keys.broadcast, payload)

    def send_event(self, payload: bytes) -> asyncio.Future[None]:
        """Queue a publish to ``events``, in order with the node's other publishes."""
        return self._publisher.send(self.keys.events, payload)

    async def subscribe(
        self,
        instance_id: int,
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
    ) -> None:
        """Subscribe to the own inbox, then the broadcast channel; returns once live and
        keeps them live until :meth:`unsubscribe`."""
        if self._subscriber is not None:
            raise RuntimeError("this engine already has a subscription")
        await self._ready()
        subscriber = self._subscription(instance_id, on_message, on_event)
        await subscriber.start()
        self._subscriber = subscriber

    def _subscription(
        self, instance_id: int, on_message: MessageCallback, on_event: SubscriptionEventCallback
    ) -> _Subscription:
        """The engine's own kind of subscription, not started yet."""
        raise NotImplementedError

    async def unsubscribe(self) -> None:
        """End the subscription and close its connections."""
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()

    async def aclose(self) -> None:
        """Unsubscribe, then close the command client."""
        if self._closed:
            return
        self._closed = True
        await self.unsubscribe()
        await self._publisher.aclose()
        await self._client.aclose()


class KeptSubscription:
    """One pub/sub connection kept subscribed until :meth:`close`.

    It reads with a timeout; when nothing arrived for ``health_check_interval`` it
    sends PING and expects the pong (or any message) within max(2 intervals, 3 s), so
    a connection that died without a FIN (or was killed unnoticed) is detected too. On
    any failure it reports the loss, re-subscribes with exponential backoff (50 ms to
    1 s), and reports the recovery. Subclasses say how to read and to re-subscribe.
    """

    def __init__(self, name: str, health_check_interval: float) -> None:
        self._name_text = name
        self._interval = max(health_check_interval, 0.05)
        # Generous: a busy event loop or Redis must not be mistaken for a dead socket.
        self._pong_timeout = max(2 * self._interval, _PONG_TIMEOUT_MIN)
        self._connection: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._ping_sent_at: float | None = None

    def _keep_alive(self, task_name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=task_name)

    async def _read_loop(self) -> None:
        """Dispatch replies until :meth:`close` ended the subscription; raise on a failure."""
        raise NotImplementedError

    async def _drop(self) -> None:
        """Before each attempt to re-subscribe (the broken connection is of no more use)."""

    async def _resubscribe(self) -> None:
        """Connect (again) and subscribe; errors propagate and the attempt is retried."""
        raise NotImplementedError

    def _lost(self) -> None:
        """The subscription broke."""

    def _restored(self) -> None:
        """The subscription is live again."""

    async def _next_reply(self, connection: AbstractConnection) -> Any:
        """The next reply; PING when idle for an interval, fail when no answer comes."""
        while True:
            reply = await connection.read_response(timeout=self._interval, push_request=True)
            if reply is not None:
                # Any reply proves the connection is alive.
                self._ping_sent_at = None
                return reply
            now = asyncio.get_running_loop().time()
            if self._ping_sent_at is None:
                await connection.send_command("PING")
                self._ping_sent_at = now
            elif now - self._ping_sent_at > self._pong_timeout:
                raise RedisTimeoutError(f"mesh subscriber of {self._name_text} did not answer PING")

    async def _run(self) -> None:
        backoff = _RESUBSCRIBE_BACKOFF_MIN
        while True:
            self._ping_sent_at = None
            try:
                await self._read_loop()
                return  # unsubscribed by close()
            except Exception as exc:
                raise_if_cancelling()
                logger.warning(
                    "mesh subscriber of %s lost (%s); re-subscribing", self._name_text, exc
                )
            self._lost()
            while True:
                await self._drop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RESUBSCRIBE_BACKOFF_MAX)
                try:
                    await self._resubscribe()
                except Exception as exc:
                    raise_if_cancelling()
                    logger.debug("mesh re-subscribe of %s failed: %s", self._name_text, exc)
                    continue
                break
            logger.info("mesh subscriber re-subscribed to %s", self._name_text)
            backoff = _RESUBSCRIBE_BACKOFF_MIN
            self._restored()

    async def _close(self, *unsubscribe: str | bytes) -> None:
        """Send ``unsubscribe`` (the reader ends on its confirmation), stop the reader,
        close the connection."""
        self._closing = True
        task, self._task = self._task, None
        connection = self._connection
        if task is not None and connection is not None and connection.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await connection.send_command(*unsubscribe)
                    await asyncio.wait({task}, timeout=1.0)
        if task is not None:
            await cancel_and_wait([task])
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)

    def _notify(self, callback: SubscriptionEventCallback, event: Any) -> None:
        try:
            callback(event)
        except Exception:
            logger.exception("mesh subscription callback failed")


class RedisLeaderLockScripts:
    """:class:`~meshsrpc.engine.base.LeaderLockEngine` on either Redis client."""

    def __init__(self, client: Redis | RedisCluster, ready: Ready) -> None:
        self._client = client
        self._ready = ready
        self._acquire = load_script(client, "leader_acquire")
        self._renew = load_script(client, "leader_renew")
        self._release = load_script(client, "leader_release")
        self._closed = False

    async def acquire(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """SET key lock_id PX ttl if absent."""
        await self._ready()
        return int(await self._acquire(keys=[key], args=[lock_id, ttl_ms])) == 1

    async def renew(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """PEXPIRE if the value is ours."""
        await self._ready()
        return int(await self._renew(keys=[key], args=[lock_id, ttl_ms])) == 1

    async def release(self, key: str, lock_id: str) -> bool:
        """DEL if the value is ours."""
        await self._ready()
        return int(await self._release(keys=[key], args=[lock_id])) == 1

    async def aclose(self) -> None:
        """Close the client's connections."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()
