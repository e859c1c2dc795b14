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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import Connection
from redis.exceptions import RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._cluster import ClusterReady
from ..settings import RedisSettings, create_redis_cluster_client
from . import _redis_common as common
from .base import (
    MeshKeys,
    MessageCallback,
    MessageSource,
    SubscriptionEvent,
    SubscriptionEventCallback,
)

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster

__all__ = ["ClusterMeshKeys", "RedisClusterLeaderLock", "RedisClusterMeshEngine"]

logger = logging.getLogger("meshsrpc.engine.redis_cluster")


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
    return create_redis_cluster_client(settings, **common.command_options())


class RedisClusterMeshEngine(common.RedisEngineCommands):
    """:class:`~meshsrpc.engine.base.MeshEngine` on a Redis Cluster (sharded pub/sub)."""

    unreachable = (*common.RedisEngineCommands.unreachable, RedisClusterException)

    def __init__(
        self, settings: RedisSettings, key: str, *, health_check_interval: float = 5.0
    ) -> None:
        client = _command_client(settings)
        ready = ClusterReady(client)
        keys = ClusterMeshKeys(settings.key_prefix, key)
        publisher = _ShardedPublisher(client, ready)
        super().__init__(settings, keys, client, ready, publisher, health_check_interval)
        self._cluster = client

    async def ping(self) -> None:
        """PING the primary serving the mesh keys."""
        await self._ready()
        await self._client.execute_command("EXISTS", self.keys.nodes)

    def _subscription(
        self, instance_id: int, on_message: MessageCallback, on_event: SubscriptionEventCallback
    ) -> _ClusterSubscriber:
        """SSUBSCRIBE own inbox, then broadcast, each on the primary owning its slot."""
        return _ClusterSubscriber(
            self._cluster,
            channels=[
                (self.keys.inbox(instance_id), MessageSource.INBOX),
                (self.keys.broadcast, MessageSource.BROADCAST),
            ],
            on_message=on_message,
            on_event=on_event,
            health_check_interval=self._health_check_interval,
        )


class _ShardedPublisher(common.QueuedPublisher):
    """SPUBLISH in the order sent, one message at a time.

    Messages to different nodes go to different shards, so there is no single
    connection to pipeline them on; keeping one sender keeps a node's messages in order.
    """

    _task_name = "meshsrpc-cluster-publisher"

    def __init__(self, client: RedisCluster, ready: ClusterReady) -> None:
        super().__init__()
        self._client = client
        self._ready = ready

    async def _publish(self, batch: list[common.Queued]) -> None:
        for channel, payload, done in batch:
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


class _ShardSubscription(common.KeptSubscription):
    """SSUBSCRIBE to one channel on the primary owning its slot, kept alive until closed.

    Health-checked as the single-instance subscriber (see
    :class:`~meshsrpc.engine._redis_common.KeptSubscription`); on a failure (or a
    server ``sunsubscribe``) it refreshes the slot map and subscribes on the owner.
    """

    def __init__(
        self,
        client: RedisCluster,
        channel: str,
        source: MessageSource,
        *,
        on_message: MessageCallback,
        on_down: Callable[[str], None],
        on_up: Callable[[str], None],
        health_check_interval: float,
    ) -> None:
        super().__init__(channel, health_check_interval)
        self._client = client
        self._channel = channel
        self._name = channel.encode()
        self._source = source
        self._on_message = on_message
        self._on_down = on_down
        self._on_up = on_up

    async def start(self) -> None:
        """Subscribe once (errors propagate), then keep it alive in a task."""
        await self._connect()
        self._keep_alive(f"meshsrpc-shard-subscriber {self._channel}")

    async def close(self) -> None:
        """SUNSUBSCRIBE, stop the reader, close the connection."""
        await self._close("SUNSUBSCRIBE", self._name)

    async def _connect(self) -> None:
        """Connect to the owner of the channel's slot and SSUBSCRIBE there."""
        await self._client.initialize()
        node = self._client.get_node_from_key(self._channel)
        if node is None:
            raise RedisClusterException(f"no shard serves the slot of {self._channel!r}")
        options = dict(node.connection_kwargs)
        options.update(host=node.host, port=node.port, **common.subscriber_options())
        options.pop("connection_class", None)
        connection = Connection(**options)
        old, self._connection = self._connection, connection
        if old is not None:
            with contextlib.suppress(Exception):
                await old.disconnect(nowait=True)
        await connection.connect()  # type: ignore[no-untyped-call,unused-ignore]
        await connection.send_command("SSUBSCRIBE", self._name)
        async with asyncio.timeout(common.SOCKET_TIMEOUT):
            while True:
                reply = await connection.read_response(
                    timeout=common.SOCKET_TIMEOUT, push_request=True
                )
                if reply is None:
                    raise RedisTimeoutError("no ssubscribe confirmation from Redis")
                if common.reply_kind(reply) == b"ssubscribe":
                    return
                self._dispatch(reply)

    async def _resubscribe(self) -> None:
        # The slot may have a new owner (failover): ask the cluster again.
        await self._client.nodes_manager.initialize()
        await self._connect()

    def _lost(self) -> None:
        self._on_down(self._channel)

    def _restored(self) -> None:
        self._on_up(self._channel)

    async def _read_loop(self) -> None:
        connection = self._connection
        assert connection is not None
        while True:
            reply = await self._next_reply(connection)
            if isinstance(reply, ResponseError):
                raise reply
            if common.reply_kind(reply) == b"sunsubscribe":
                if self._closing:
                    return
                raise _SlotMoved(f"the server ended the subscription of {self._channel}")
            self._dispatch(reply)

    def _dispatch(self, reply: Any) -> None:
        if common.reply_kind(reply) != b"smessage" or len(reply) < 3:
            return
        try:
            self._on_message(self._source, bytes(reply[2]))
        except Exception:
            logger.exception("mesh message callback failed")


class RedisClusterLeaderLock(common.RedisLeaderLockScripts):
    """:class:`~meshsrpc.engine.base.LeaderLockEngine` on a Redis Cluster (one key per lock)."""

    def __init__(self, settings: RedisSettings) -> None:
        client = _command_client(settings)
        super().__init__(client, ClusterReady(client))
