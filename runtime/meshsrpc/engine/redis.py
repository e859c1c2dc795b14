"""The Redis engine: mesh storage in keys and Lua scripts, transport over pub/sub.

Two connections per mesh node, as the TypeScript nodes use: a command client (INCR,
scripts, HSET, PUBLISH) and one dedicated subscriber connection. redis-py already
reconnects the command client on the next command; the subscriber is driven by hand
here (:class:`_Subscriber`) so that a dropped or silently dead connection is noticed
(PING health check), re-subscribed with backoff, and reported to the mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._lua import lua_source
from .._tasks import cancel_and_wait, raise_if_cancelling
from ..errors import MeshConnectionError
from ..settings import RedisSettings, create_redis_client
from .base import (
    MeshKeys,
    MessageCallback,
    MessageSource,
    SubscriptionEvent,
    SubscriptionEventCallback,
    decode_nodes,
)

try:  # redis-py's hiredis parser and its "incomplete reply" marker (not public)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser as _HiredisParser
except ImportError:  # pragma: no cover - other redis-py versions: one read per message
    _NOT_ENOUGH_DATA = object()
    _HiredisParser = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript

__all__ = ["RedisLeaderLock", "RedisMeshEngine"]

logger = logging.getLogger("meshsrpc.engine.redis")

_PACKAGE = __name__.rpartition(".")[0]
# Bounded so that a command against a dead or paused Redis fails in seconds, not minutes.
_CONNECT_TIMEOUT = 2.0
_SOCKET_TIMEOUT = 5.0
_RESUBSCRIBE_BACKOFF_MIN = 0.05
_RESUBSCRIBE_BACKOFF_MAX = 1.0
_PONG_TIMEOUT_MIN = 3.0


def _command_client(settings: RedisSettings) -> Redis:
    # A short retry: a command issued just after Redis came back succeeds, one issued
    # while it is down fails fast and the caller (timer, invoke) decides what to do.
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)
    return create_redis_client(
        settings,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_timeout=_SOCKET_TIMEOUT,
        retry=retry,
    )


def _script(client: Redis, name: str) -> AsyncScript:
    # register_script runs EVALSHA and reloads the body on NOSCRIPT (e.g. after a restart).
    return client.register_script(lua_source(_PACKAGE, name))


class RedisMeshEngine:
    """:class:`~meshsrpc.engine.base.MeshEngine` on Redis (keys and channels of WIRE.md §1)."""

    def __init__(
        self, settings: RedisSettings, key: str, *, health_check_interval: float = 5.0
    ) -> None:
        self.keys = MeshKeys(settings.key_prefix, key)
        self._settings = settings
        self._health_check_interval = health_check_interval
        self._client = _command_client(settings)
        self._heartbeat = _script(self._client, "heartbeat")
        self._cleanup = _script(self._client, "cleanup")
        self._deregister = _script(self._client, "deregister")
        self._rejoin = _script(self._client, "rejoin")
        self._publisher = _Publisher(self._client)
        self._subscriber: _Subscriber | None = None
        self._closed = False

    async def allocate_instance_id(self) -> int:
        """INCR ``next_id``; :class:`MeshConnectionError` when Redis cannot be reached.

        The first command of a starting node, so its failure says where Redis was
        looked for.
        """
        # Plain INCR (redis-py's incr() sends INCRBY key 1), as in the capture.
        incr = self._client.execute_command("INCR", self.keys.next_id)  # type: ignore[no-untyped-call]
        try:
            return int(await incr)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            settings = self._settings
            raise MeshConnectionError(
                f"cannot reach Redis at {settings.describe()}{settings.origin()}: {exc}"
            ) from exc

    async def heartbeat(self, instance_id: int) -> bool:
        """Run the heartbeat script (Redis TIME); True if the entry was new."""
        added = await self._heartbeat(keys=[self.keys.heartbeats], args=[instance_id])
        return int(added) == 1

    async def register_node(self, instance_id: int, hostname: str) -> None:
        """HSET ``nodes`` id hostname."""
        await self._client.hset(self.keys.nodes, str(instance_id), hostname)

    async def rejoin(self, instance_id: int, hostname: str) -> None:
        """Hostname again, and ``next_id`` raised to at least ``instance_id``, atomically."""
        await self._rejoin(keys=[self.keys.nodes, self.keys.next_id], args=[instance_id, hostname])

    async def cleanup_expired(self, node_ttl_ms: int) -> list[int]:
        """Run the cleanup script; the ids it removed."""
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
        await self._deregister(keys=[self.keys.heartbeats, self.keys.nodes], args=[instance_id])

    async def list_nodes(self) -> dict[int, str]:
        """HGETALL ``nodes``."""
        return decode_nodes(await self._client.hgetall(self.keys.nodes))

    async def publish_to_node(self, instance_id: int, payload: bytes) -> None:
        """PUBLISH to ``node:<id>``."""
        await self._publisher.publish(self.keys.inbox(instance_id), payload)

    def send_to_node(self, instance_id: int, payload: bytes) -> asyncio.Future[None]:
        """Queue a PUBLISH to ``node:<id>``; the future ends when Redis confirmed it."""
        return self._publisher.send(self.keys.inbox(instance_id), payload)

    async def publish_broadcast(self, payload: bytes) -> None:
        """PUBLISH to ``broadcast``."""
        await self._publisher.publish(self.keys.broadcast, payload)

    def send_event(self, payload: bytes) -> asyncio.Future[None]:
        """Queue a PUBLISH to ``events``, in order with the node's other publishes."""
        return self._publisher.send(self.keys.events, payload)

    async def ping(self) -> None:
        """PING on the command client."""
        await self._client.ping()

    async def note_leader(self, instance_id: int, ttl_ms: int) -> None:
        """SET ``leader`` id PX ttl."""
        await self._client.set(self.keys.leader, str(instance_id), px=ttl_ms)

    async def subscribe(
        self,
        instance_id: int,
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
    ) -> None:
        """SUBSCRIBE own inbox + broadcast on a dedicated connection; kept alive until
        :meth:`unsubscribe`."""
        if self._subscriber is not None:
            raise RuntimeError("this engine already has a subscription")
        subscriber = _Subscriber(
            self._settings,
            inbox=self.keys.inbox(instance_id),
            broadcast=self.keys.broadcast,
            on_message=on_message,
            on_event=on_event,
            health_check_interval=self._health_check_interval,
        )
        await subscriber.start()
        self._subscriber = subscriber

    async def unsubscribe(self) -> None:
        """UNSUBSCRIBE and close the subscriber connection."""
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


class _Publisher:
    """PUBLISH, pipelined on one connection of the command client's pool.

    Every PUBLISH of a node (requests, replies, request heartbeats, broadcasts) is
    queued; one task writes whatever is queued in a single write, then reads the
    replies in order, while the next batch queues up. Under load that is one system
    call and one Redis wake-up for many messages instead of one each, and a node's
    messages leave in the order they were published. The task and its connection
    stay for the engine's life: with one message at a time, starting a task and
    checking a pooled connection out per PUBLISH cost more than the PUBLISH.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queue: list[_Queued] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None

    async def publish(self, channel: str, payload: bytes) -> None:
        """PUBLISH ``payload`` to ``channel``; returns once Redis confirmed it."""
        await self.send(channel, payload)

    def send(self, channel: str, payload: bytes) -> asyncio.Future[None]:
        """Queue a PUBLISH; the future ends when Redis confirmed it (or with the error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((channel, payload, done))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="meshsrpc-publisher")
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        return done

    async def aclose(self) -> None:
        """Stop writing; queued messages fail with a connection error."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        _fail(self._queue, RedisConnectionError("mesh publisher closed"))
        self._queue = []

    async def _run(self) -> None:
        pool = self._client.connection_pool
        connection: AbstractConnection | None = None
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            loop = asyncio.get_running_loop()
            while True:
                if not self._queue:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    self._wakeup = None
                batch, self._queue = self._queue, []
                try:
                    try:
                        await _send_publishes(connection, batch)
                    except _CONNECTION_ERRORS:
                        # As the command client's retry: a pooled connection may have
                        # died with a restarted Redis; send once more on a new one.
                        await connection.disconnect(nowait=True)
                        await _send_publishes(connection, [m for m in batch if not m[2].done()])
                except BaseException as exc:
                    _fail(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
        except BaseException as exc:
            queued, self._queue = self._queue, []
            _fail(queued, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._task = None
            self._wakeup = None
            if connection is not None:
                await pool.release(connection)


_Queued = tuple[str, bytes, "asyncio.Future[None]"]
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


async def _send_publishes(connection: AbstractConnection, batch: list[_Queued]) -> None:
    """One write with every PUBLISH of ``batch``, then their replies, in order."""
    commands = [("PUBLISH", channel, payload) for channel, payload, _ in batch]
    await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
    # One deadline for the batch (its replies arrive together), not one timer per reply.
    # A timeout cancels the read, and redis-py then drops the connection.
    try:
        async with asyncio.timeout(_SOCKET_TIMEOUT):
            await _read_publish_replies(connection, batch)
    except TimeoutError:
        raise RedisTimeoutError("timeout reading PUBLISH replies from Redis") from None


async def _read_publish_replies(connection: AbstractConnection, batch: list[_Queued]) -> None:
    for _, _, done in batch:
        try:
            await connection.read_response(timeout=math.inf)
        except ResponseError as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)


def _fail(batch: list[_Queued], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else RedisConnectionError("mesh publisher stopped")
    for _, _, done in batch:
        if not done.done():
            done.set_exception(error)


class _Subscriber:
    """One dedicated pub/sub connection that stays subscribed until closed.

    It reads with a timeout; when nothing arrived for ``health_check_interval`` it
    sends PING and expects the pong (or any message) within max(2 intervals, 3 s), so
    a connection that died without a FIN (or was killed unnoticed) is detected too. On
    any failure it reports LOST, reconnects with exponential backoff (50 ms to 1 s),
    re-subscribes, and reports RESTORED.
    """

    def __init__(
        self,
        settings: RedisSettings,
        *,
        inbox: str,
        broadcast: str,
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
        health_check_interval: float,
    ) -> None:
        self._inbox = inbox.encode()
        self._broadcast = broadcast.encode()
        self._on_message = on_message
        self._on_event = on_event
        self._interval = max(health_check_interval, 0.05)
        # Generous: a busy event loop or Redis must not be mistaken for a dead socket.
        self._pong_timeout = max(2 * self._interval, _PONG_TIMEOUT_MIN)
        # No retries inside redis-py: this class owns reconnecting.
        self._client = create_redis_client(
            settings,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            # RESP2, as the TypeScript nodes: messages are plain replies, not push frames.
            protocol=2,
        )
        self._connection: AbstractConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Connect and subscribe once (errors propagate), then keep it alive in a task."""
        try:
            self._connection = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            await self._subscribe(self._connection)
        except BaseException:
            await self._client.aclose()
            raise
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"meshsrpc-subscriber {self._inbox.decode()}"
        )

    async def close(self) -> None:
        """UNSUBSCRIBE (the reader ends on its confirmation), then close the connection."""
        self._closing = True
        task, self._task = self._task, None
        connection = self._connection
        if task is not None and connection is not None and connection.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await connection.send_command("UNSUBSCRIBE")
                    await asyncio.wait({task}, timeout=1.0)
        if task is not None:
            await cancel_and_wait([task])
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def _subscribe(self, connection: AbstractConnection) -> None:
        # Own inbox first, then the broadcast channel, in one command (as the TS nodes do).
        await connection.send_command("SUBSCRIBE", self._inbox, self._broadcast)
        async with asyncio.timeout(_SOCKET_TIMEOUT):
            await self._read_until(connection, b"subscribe", count=2)

    async def _read_until(self, connection: AbstractConnection, kind: bytes, *, count: int) -> None:
        seen = 0
        while seen < count:
            reply = await connection.read_response(timeout=_SOCKET_TIMEOUT, push_request=True)
            if reply is None:
                raise RedisTimeoutError(f"no {kind.decode()} confirmation from Redis")
            if _kind(reply) == kind:
                seen += 1
            else:
                self._dispatch(reply)

    async def _run(self) -> None:
        backoff = _RESUBSCRIBE_BACKOFF_MIN
        connection = self._connection
        assert connection is not None
        while True:
            try:
                await self._read_loop(connection)
                return  # unsubscribed by close()
            except Exception as exc:
                raise_if_cancelling()
                logger.warning("mesh subscriber connection lost (%s); reconnecting", exc)
            self._notify(SubscriptionEvent.LOST)
            while True:
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RESUBSCRIBE_BACKOFF_MAX)
                try:
                    await connection.connect()  # type: ignore[no-untyped-call]
                    await self._subscribe(connection)
                except Exception as exc:
                    raise_if_cancelling()
                    logger.debug("mesh subscriber reconnect failed: %s", exc)
                    continue
                break
            logger.info("mesh subscriber re-subscribed to %s", self._inbox.decode())
            backoff = _RESUBSCRIBE_BACKOFF_MIN
            self._notify(SubscriptionEvent.RESTORED)

    async def _read_loop(self, connection: AbstractConnection) -> None:
        loop = asyncio.get_running_loop()
        ping_sent_at: float | None = None
        # After the connection's (re)connect, which gives its parser a new reader.
        buffered = _buffered_replies(connection)
        while True:
            reply = await connection.read_response(timeout=self._interval, push_request=True)
            if reply is None:
                if ping_sent_at is None:
                    await connection.send_command("PING")
                    ping_sent_at = loop.time()
                elif loop.time() - ping_sent_at > self._pong_timeout:
                    raise RedisTimeoutError("mesh subscriber did not answer PING")
                continue
            # Any reply proves the connection is alive.
            ping_sent_at = None
            if self._handle(reply):
                return
            if buffered is not None:
                # The rest of what that read brought, without a timer and an await
                # per message (many messages per wake-up under load).
                while (reply := buffered()) is not _NOT_ENOUGH_DATA:
                    if isinstance(reply, Exception):
                        raise reply
                    if self._handle(reply):
                        return

    def _handle(self, reply: Any) -> bool:
        """Dispatch one reply; True when it confirms the unsubscribe of close()."""
        if self._closing and _kind(reply) == b"unsubscribe" and reply[2] == 0:
            return True
        self._dispatch(reply)
        return False

    def _dispatch(self, reply: Any) -> None:
        if _kind(reply) != b"message" or len(reply) < 3:
            return
        channel, data = reply[1], reply[2]
        source = MessageSource.BROADCAST if channel == self._broadcast else MessageSource.INBOX
        try:
            self._on_message(source, bytes(data))
        except Exception:
            logger.exception("mesh message callback failed")

    def _notify(self, event: SubscriptionEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            logger.exception("mesh subscription callback failed")


def _buffered_replies(connection: AbstractConnection) -> Callable[[], Any] | None:
    """The hiredis reader's ``gets`` of ``connection``: the next reply already read from
    the socket, or ``_NOT_ENOUGH_DATA``; None with another parser."""
    parser = getattr(connection, "_parser", None)
    if _HiredisParser is None or not isinstance(parser, _HiredisParser):
        return None
    reader = getattr(parser, "_reader", None)
    gets = getattr(reader, "gets", None)
    return gets if callable(gets) else None


def _kind(reply: Any) -> bytes | None:
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].lower()
    return None


class RedisLeaderLock:
    """:class:`~meshsrpc.engine.base.LeaderLockEngine` on Redis (its own connection)."""

    def __init__(self, settings: RedisSettings) -> None:
        self._client = _command_client(settings)
        self._acquire = _script(self._client, "leader_acquire")
        self._renew = _script(self._client, "leader_renew")
        self._release = _script(self._client, "leader_release")
        self._closed = False

    async def acquire(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """SET key lock_id PX ttl if absent."""
        return int(await self._acquire(keys=[key], args=[lock_id, ttl_ms])) == 1

    async def renew(self, key: str, lock_id: str, ttl_ms: int) -> bool:
        """PEXPIRE if the value is ours."""
        return int(await self._renew(keys=[key], args=[lock_id, ttl_ms])) == 1

    async def release(self, key: str, lock_id: str) -> bool:
        """DEL if the value is ours."""
        return int(await self._release(keys=[key], args=[lock_id])) == 1

    async def aclose(self) -> None:
        """Close the connection pool."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()
