"""The Redis Cluster engine: mesh keys in one hash slot, transport over sharded pub/sub.

A Python-only layout (docs/wire.md, "Cluster layout"). The small mesh keys
(``next_id``, ``heartbeats``, ``nodes``, ``leader``) share the hash tag
``{<P>:mesh:<key>}`` so the multi-key scripts of the single-instance engine (its
``*.lua`` files, unchanged) run in one slot. The channels keep their WIRE.md names
without a tag, so each node's inbox hashes to its own slot and the inboxes spread
over the shards; they are sharded channels (``SPUBLISH``/``SSUBSCRIBE``, Redis ≥ 7),
which only the shard owning the slot carries.

Faults: redis-py's ``RedisCluster`` follows MOVED/ASK and refreshes its slot map on
connection errors; commands during a failover fail after its short retries, like
commands against a restarting Redis. Each subscribed channel has its own connection
to the primary owning its slot (:class:`_ShardSubscription`): when that connection
breaks or the server ends the subscription (``sunsubscribe``: the slot moved), the
slot map is refreshed and the channel re-subscribed on the new owner, with LOST and
RESTORED reported to the mesh as for the single-instance engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._cluster import ClusterReady
from .._lua import lua_source
from .._tasks import cancel_and_wait, raise_if_cancelling
from ..errors import MeshConnectionError
from ..settings import RedisSettings, create_redis_cluster_client
from .base import (
    MeshKeys,
    MessageCallback,
    MessageSource,
    SubscriptionEvent,
    SubscriptionEventCallback,
    decode_nodes,
)

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["ClusterMeshKeys", "RedisClusterLeaderLock", "RedisClusterMeshEngine"]

logger = logging.getLogger("meshsrpc.engine.redis_cluster")

_PACKAGE = __name__.rpartition(".")[0]
_CONNECT_TIMEOUT = 2.0
_SOCKET_TIMEOUT = 5.0
_RESUBSCRIBE_BACKOFF_MIN = 0.05
_RESUBSCRIBE_BACKOFF_MAX = 1.0
_PONG_TIMEOUT_MIN = 3.0
_ERRORS = (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError)


@dataclass(frozen=True)
class ClusterMeshKeys(MeshKeys):
    """Key and channel names of one mesh on a cluster: keys tagged, channels not."""

    @property
    def base(self) -> str:
        """``{P:mesh:K}``: one hash tag, one slot for every small mesh key."""
        return f"{{{self.prefix}:mesh:{self.key}}}"

    @property
    def channel_base(self) -> str:
        """``P:mesh:K``: channels are named as in WIRE.md, hashed each to its own slot."""
        return f"{self.prefix}:mesh:{self.key}"

    @property
    def broadcast(self) -> str:
        """The broadcast channel (one sharded channel)."""
        return f"{self.channel_base}:broadcast"

    @property
    def events(self) -> str:
        """The presence-event channel (one sharded channel)."""
        return f"{self.channel_base}:events"

    def inbox(self, instance_id: int) -> str:
        """The sharded channel of one node."""
        return f"{self.channel_base}:node:{instance_id}"


def _command_client(settings: RedisSettings) -> RedisCluster:
    # As the single-instance engine: a command during a failover fails in seconds.
    return create_redis_cluster_client(
        settings,
        socket_connect_timeout=_CONNECT_TIMEOUT,
        socket_timeout=_SOCKET_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
    )


def _script(client: RedisCluster, name: str) -> AsyncScript:
    return client.register_script(lua_source(_PACKAGE, name))


class RedisClusterMeshEngine:
    """:class:`~meshsrpc.engine.base.MeshEngine` on a Redis Cluster (sharded pub/sub)."""

    def __init__(
        self, settings: RedisSettings, key: str, *, health_check_interval: float = 5.0
    ) -> None:
        self.keys = ClusterMeshKeys(settings.key_prefix, key)
        self._settings = settings
        self._health_check_interval = health_check_interval
        self._client = _command_client(settings)
        self._ready = ClusterReady(self._client)
        self._heartbeat = _script(self._client, "heartbeat")
        self._cleanup = _script(self._client, "cleanup")
        self._deregister = _script(self._client, "deregister")
        self._rejoin = _script(self._client, "rejoin")
        self._publisher = _ShardedPublisher(self._client, self._ready)
        self._subscriber: _ClusterSubscriber | None = None
        self._closed = False

    async def allocate_instance_id(self) -> int:
        """INCR ``next_id``; :class:`MeshConnectionError` when the cluster cannot be reached."""
        try:
            await self._ready()
            return int(await self._client.execute_command("INCR", self.keys.next_id))
        except _ERRORS as exc:
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

    async def publish_to_node(self, instance_id: int, payload: bytes) -> None:
        """SPUBLISH to ``node:<id>``."""
        await self._publisher.send(self.keys.inbox(instance_id), payload)

    def send_to_node(self, instance_id: int, payload: bytes) -> asyncio.Future[None]:
        """Queue an SPUBLISH to ``node:<id>``; the future ends when Redis confirmed it."""
        return self._publisher.send(self.keys.inbox(instance_id), payload)

    async def publish_broadcast(self, payload: bytes) -> None:
        """SPUBLISH to ``broadcast``."""
        await self._publisher.send(self.keys.broadcast, payload)

    def send_event(self, payload: bytes) -> asyncio.Future[None]:
        """Queue an SPUBLISH to ``events``, in order with the node's other publishes."""
        return self._publisher.send(self.keys.events, payload)

    async def ping(self) -> None:
        """PING the primary serving the mesh keys."""
        await self._ready()
        await self._client.execute_command("EXISTS", self.keys.nodes)

    async def note_leader(self, instance_id: int, ttl_ms: int) -> None:
        """SET ``leader`` id PX ttl."""
        await self._ready()
        await self._client.set(self.keys.leader, str(instance_id), px=ttl_ms)

    async def subscribe(
        self,
        instance_id: int,
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
    ) -> None:
        """SSUBSCRIBE own inbox, then broadcast, each on the primary owning its slot."""
        if self._subscriber is not None:
            raise RuntimeError("this engine already has a subscription")
        await self._ready()
        subscriber = _ClusterSubscriber(
            self._client,
            channels=[
                (self.keys.inbox(instance_id), MessageSource.INBOX),
                (self.keys.broadcast, MessageSource.BROADCAST),
            ],
            on_message=on_message,
            on_event=on_event,
            health_check_interval=self._health_check_interval,
        )
        await subscriber.start()
        self._subscriber = subscriber

    async def unsubscribe(self) -> None:
        """End the subscriptions and close their connections."""
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.close()

    async def aclose(self) -> None:
        """Unsubscribe, then close the cluster client."""
        if self._closed:
            return
        self._closed = True
        await self.unsubscribe()
        await self._publisher.aclose()
        await self._client.aclose()


_Queued = tuple[str, bytes, "asyncio.Future[None]"]


class _ShardedPublisher:
    """SPUBLISH in the order sent: one task sends the queue, one message at a time.

    Messages to different nodes go to different shards, so there is no single
    connection to pipeline them on; keeping one sender keeps a node's messages in order.
    """

    def __init__(self, client: RedisCluster, ready: ClusterReady) -> None:
        self._client = client
        self._ready = ready
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def send(self, channel: str, payload: bytes) -> asyncio.Future[None]:
        """Queue an SPUBLISH; the future ends when Redis confirmed it (or with the error)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put_nowait((channel, payload, done))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="meshsrpc-cluster-publisher")
        return done

    async def aclose(self) -> None:
        """Stop sending; queued messages fail with a connection error."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        while not self._queue.empty():
            _, _, done = self._queue.get_nowait()
            if not done.done():
                done.set_exception(RedisConnectionError("mesh publisher closed"))

    async def _run(self) -> None:
        while True:
            channel, payload, done = await self._queue.get()
            if done.done():
                continue
            try:
                await self._ready()
                await self._client.execute_command("SPUBLISH", channel, payload)
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
            else:
                if not done.done():
                    done.set_result(None)


class _ClusterSubscriber:
    """One :class:`_ShardSubscription` per channel; LOST when any breaks, RESTORED when
    all are live again."""

    def __init__(
        self,
        client: RedisCluster,
        *,
        channels: list[tuple[str, MessageSource]],
        on_message: MessageCallback,
        on_event: SubscriptionEventCallback,
        health_check_interval: float,
    ) -> None:
        self._on_event = on_event
        self._down: set[str] = set()
        self._subscriptions = [
            _ShardSubscription(
                client,
                channel,
                source,
                on_message=on_message,
                on_down=self._channel_down,
                on_up=self._channel_up,
                health_check_interval=health_check_interval,
            )
            for channel, source in channels
        ]

    async def start(self) -> None:
        """Subscribe every channel in order (errors propagate), then keep them alive."""
        try:
            for subscription in self._subscriptions:
                await subscription.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every subscription."""
        for subscription in self._subscriptions:
            await subscription.close()

    def _channel_down(self, channel: str) -> None:
        first = not self._down
        self._down.add(channel)
        if first:
            self._notify(SubscriptionEvent.LOST)

    def _channel_up(self, channel: str) -> None:
        if channel not in self._down:
            return
        self._down.discard(channel)
        if not self._down:
            self._notify(SubscriptionEvent.RESTORED)

    def _notify(self, event: SubscriptionEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            logger.exception("mesh subscription callback failed")


class _SlotMoved(Exception):
    """The server ended the subscription: its slot now lives on another shard."""


class _ShardSubscription:
    """SSUBSCRIBE to one channel on the primary owning its slot, kept alive until closed.

    Health-checked with PING as the single-instance subscriber; on a failure (or a
    server ``sunsubscribe``) it refreshes the slot map and subscribes on the owner.
    """

    def __init__(
        self,
        client: RedisCluster,
        channel: str,
        source: MessageSource,
        *,
        on_message: MessageCallback,
        on_down: Any,
        on_up: Any,
        health_check_interval: float,
    ) -> None:
        self._client = client
        self._channel = channel
        self._name = channel.encode()
        self._source = source
        self._on_message = on_message
        self._on_down = on_down
        self._on_up = on_up
        self._interval = max(health_check_interval, 0.05)
        self._pong_timeout = max(2 * self._interval, _PONG_TIMEOUT_MIN)
        self._connection: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Subscribe once (errors propagate), then keep it alive in a task."""
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"meshsrpc-shard-subscriber {self._channel}"
        )

    async def close(self) -> None:
        """SUNSUBSCRIBE, stop the reader, close the connection."""
        self._closing = True
        task, self._task = self._task, None
        connection = self._connection
        if task is not None and connection is not None and connection.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await connection.send_command("SUNSUBSCRIBE", self._name)
                    await asyncio.wait({task}, timeout=1.0)
        if task is not None:
            await cancel_and_wait([task])
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)

    async def _connect(self) -> None:
        """Connect to the owner of the channel's slot and SSUBSCRIBE there."""
        await self._client.initialize()
        node = self._client.get_node_from_key(self._channel)
        if node is None:
            raise RedisClusterException(f"no shard serves the slot of {self._channel!r}")
        options = dict(node.connection_kwargs)
        options.update(
            host=node.host,
            port=node.port,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            # RESP2: messages are plain replies, as for the single-instance subscriber.
            protocol=2,
        )
        options.pop("connection_class", None)
        connection = Connection(**options)
        old, self._connection = self._connection, connection
        if old is not None:
            with contextlib.suppress(Exception):
                await old.disconnect(nowait=True)
        await connection.connect()  # type: ignore[no-untyped-call]
        await connection.send_command("SSUBSCRIBE", self._name)
        async with asyncio.timeout(_SOCKET_TIMEOUT):
            while True:
                reply = await connection.read_response(timeout=_SOCKET_TIMEOUT, push_request=True)
                if reply is None:
                    raise RedisTimeoutError("no ssubscribe confirmation from Redis")
                if _kind(reply) == b"ssubscribe":
                    return
                self._dispatch(reply)

    async def _run(self) -> None:
        backoff = _RESUBSCRIBE_BACKOFF_MIN
        while True:
            try:
                await self._read_loop()
                return
            except Exception as exc:
                raise_if_cancelling()
                logger.warning(
                    "mesh shard subscriber of %s lost (%s); re-subscribing", self._channel, exc
                )
            self._on_down(self._channel)
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RESUBSCRIBE_BACKOFF_MAX)
                try:
                    # The slot may have a new owner (failover): ask the cluster again.
                    await self._client.nodes_manager.initialize()
                    await self._connect()
                except Exception as exc:
                    raise_if_cancelling()
                    logger.debug("mesh shard re-subscribe of %s failed: %s", self._channel, exc)
                    continue
                break
            logger.info("mesh shard subscriber re-subscribed to %s", self._channel)
            backoff = _RESUBSCRIBE_BACKOFF_MIN
            self._on_up(self._channel)

    async def _read_loop(self) -> None:
        connection = self._connection
        assert connection is not None
        loop = asyncio.get_running_loop()
        ping_sent_at: float | None = None
        while True:
            reply = await connection.read_response(timeout=self._interval, push_request=True)
            if reply is None:
                if ping_sent_at is None:
                    await connection.send_command("PING")
                    ping_sent_at = loop.time()
                elif loop.time() - ping_sent_at > self._pong_timeout:
                    raise RedisTimeoutError("mesh shard subscriber did not answer PING")
                continue
            ping_sent_at = None
            if isinstance(reply, ResponseError):
                raise reply
            if _kind(reply) == b"sunsubscribe":
                if self._closing:
                    return
                raise _SlotMoved(f"the server ended the subscription of {self._channel}")
            self._dispatch(reply)

    def _dispatch(self, reply: Any) -> None:
        if _kind(reply) != b"smessage" or len(reply) < 3:
            return
        try:
            self._on_message(self._source, bytes(reply[2]))
        except Exception:
            logger.exception("mesh message callback failed")


def _kind(reply: Any) -> bytes | None:
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        return reply[0].lower()
    return None


class RedisClusterLeaderLock:
    """:class:`~meshsrpc.engine.base.LeaderLockEngine` on a Redis Cluster (one key per lock)."""

    def __init__(self, settings: RedisSettings) -> None:
        self._client = _command_client(settings)
        self._ready = ClusterReady(self._client)
        self._acquire = _script(self._client, "leader_acquire")
        self._renew = _script(self._client, "leader_renew")
        self._release = _script(self._client, "leader_release")
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
        """Close the cluster client."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()
