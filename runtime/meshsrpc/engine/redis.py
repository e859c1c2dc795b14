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

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..settings import RedisSettings, create_redis_client
from . import _redis_common as common
from .base import (
    MeshKeys,
    MessageCallback,
    MessageSource,
    SubscriptionEvent,
    SubscriptionEventCallback,
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

__all__ = ["RedisLeaderLock", "RedisMeshEngine"]

logger = logging.getLogger("meshsrpc.engine.redis")


def _command_client(settings: RedisSettings) -> Redis:
    return create_redis_client(settings, **common.command_options())


class RedisMeshEngine(common.RedisEngineCommands):
    """:class:`~meshsrpc.engine.base.MeshEngine` on Redis (keys and channels of WIRE.md §1)."""

    def __init__(
        self, settings: RedisSettings, key: str, *, health_check_interval: float = 5.0
    ) -> None:
        client = _command_client(settings)
        keys = MeshKeys(settings.key_prefix, key)
        publisher = _Publisher(client)
        super().__init__(
            settings, keys, client, common.always_ready, publisher, health_check_interval
        )

    async def ping(self) -> None:
        """PING on the command client."""
        await self._client.ping()

    def _subscription(
        self, instance_id: int, on_message: MessageCallback, on_event: SubscriptionEventCallback
    ) -> _Subscriber:
        """SUBSCRIBE own inbox + broadcast on one dedicated connection."""
        return _Subscriber(
            self._settings,
            inbox=self.keys.inbox(instance_id),
            broadcast=self.keys.broadcast,
            on_message=on_message,
            on_event=on_event,
            health_check_interval=self._health_check_interval,
        )


class _Publisher(common.QueuedPublisher):
    """PUBLISH, pipelined on one connection of the command client's pool.

    Every PUBLISH of a node (requests, replies, request heartbeats, broadcasts) is
    queued; the publisher's task writes whatever is queued in a single write, then
    reads the replies in order. Under load that is one system call and one Redis
    wake-up for many messages instead of one each, and a node's messages leave in
    the order they were published. The connection stays for the engine's life:
    checking a pooled connection out per PUBLISH would cost more than the PUBLISH.
    """

    def __init__(self, client: Redis) -> None:
        super().__init__()
        self._pool = client.connection_pool
        self._connection: AbstractConnection | None = None

    async def _open(self) -> None:
        self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call,unused-ignore]

    async def _publish(self, batch: list[common.Queued]) -> None:
        connection = self._connection
        assert connection is not None
        try:
            await _send_publishes(connection, batch)
        except _CONNECTION_ERRORS:
            # As the command client's retry: a pooled connection may have died with a
            # restarted Redis; send once more on a new one.
            await connection.disconnect(nowait=True)
            await _send_publishes(connection, [m for m in batch if not m[2].done()])

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._pool.release(connection)


_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


async def _send_publishes(connection: AbstractConnection, batch: list[common.Queued]) -> None:
    """One write with every PUBLISH of ``batch``, then their replies, in order."""
    commands = [("PUBLISH", channel, payload) for channel, payload, _ in batch]
    await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
    # One deadline for the batch (its replies arrive together), not one timer per reply.
    # A timeout cancels the read, and redis-py then drops the connection.
    try:
        async with asyncio.timeout(common.SOCKET_TIMEOUT):
            await _read_publish_replies(connection, batch)
    except TimeoutError:
        raise RedisTimeoutError("timeout reading PUBLISH replies from Redis") from None


async def _read_publish_replies(connection: AbstractConnection, batch: list[common.Queued]) -> None:
    for _, _, done in batch:
        try:
            await connection.read_response(timeout=math.inf)
        except ResponseError as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)


class _Subscriber(common.KeptSubscription):
    """The inbox and the broadcast channel on one dedicated connection (see
    :class:`~meshsrpc.engine._redis_common.KeptSubscription` for how it is kept alive)."""

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
        super().__init__(inbox, health_check_interval)
        self._inbox = inbox.encode()
        self._broadcast = broadcast.encode()
        self._on_message = on_message
        self._on_event = on_event
        self._client = create_redis_client(settings, **common.subscriber_options())

    async def start(self) -> None:
        """Connect and subscribe once (errors propagate), then keep it alive in a task."""
        try:
            self._connection = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call,unused-ignore]
            await self._subscribe(self._connection)
        except BaseException:
            await self._client.aclose()
            raise
        self._keep_alive(f"meshsrpc-subscriber {self._inbox.decode()}")

    async def close(self) -> None:
        """UNSUBSCRIBE (the reader ends on its confirmation), then close the connection."""
        await self._close("UNSUBSCRIBE")
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def _subscribe(self, connection: AbstractConnection) -> None:
        # Own inbox first, then the broadcast channel, in one command (as the TS nodes do).
        await connection.send_command("SUBSCRIBE", self._inbox, self._broadcast)
        async with asyncio.timeout(common.SOCKET_TIMEOUT):
            await self._read_until(connection, b"subscribe", count=2)

    async def _read_until(self, connection: AbstractConnection, kind: bytes, *, count: int) -> None:
        seen = 0
        while seen < count:
            reply = await connection.read_response(timeout=common.SOCKET_TIMEOUT, push_request=True)
            if reply is None:
                raise RedisTimeoutError(f"no {kind.decode()} confirmation from Redis")
            if common.reply_kind(reply) == kind:
                seen += 1
            else:
                self._dispatch(reply)

    async def _drop(self) -> None:
        assert self._connection is not None
        with contextlib.suppress(Exception):
            await self._connection.disconnect(nowait=True)

    async def _resubscribe(self) -> None:
        connection = self._connection
        assert connection is not None
        await connection.connect()  # type: ignore[no-untyped-call,unused-ignore]
        await self._subscribe(connection)

    def _lost(self) -> None:
        self._notify(self._on_event, SubscriptionEvent.LOST)

    def _restored(self) -> None:
        self._notify(self._on_event, SubscriptionEvent.RESTORED)

    async def _read_loop(self) -> None:
        connection = self._connection
        assert connection is not None
        # After the connection's (re)connect, which gives its parser a new reader.
        buffered = _buffered_replies(connection)
        while True:
            reply = await self._next_reply(connection)
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
        if self._closing and common.reply_kind(reply) == b"unsubscribe" and reply[2] == 0:
            return True
        self._dispatch(reply)
        return False

    def _dispatch(self, reply: Any) -> None:
        if common.reply_kind(reply) != b"message" or len(reply) < 3:
            return
        channel, data = reply[1], reply[2]
        source = MessageSource.BROADCAST if channel == self._broadcast else MessageSource.INBOX
        try:
            self._on_message(source, bytes(data))
        except Exception:
            logger.exception("mesh message callback failed")


def _buffered_replies(connection: AbstractConnection) -> Callable[[], Any] | None:
    """The hiredis reader's ``gets`` of ``connection``: the next reply already read from
    the socket, or ``_NOT_ENOUGH_DATA``; None with another parser."""
    parser = getattr(connection, "_parser", None)
    if _HiredisParser is None or not isinstance(parser, _HiredisParser):
        return None
    reader = getattr(parser, "_reader", None)
    gets = getattr(reader, "gets", None)
    return gets if callable(gets) else None


class RedisLeaderLock(common.RedisLeaderLockScripts):
    """:class:`~meshsrpc.engine.base.LeaderLockEngine` on Redis (its own connection)."""

    def __init__(self, settings: RedisSettings) -> None:
        super().__init__(_command_client(settings), common.always_ready)
