"""MeshInspector: read a running mesh straight from Redis, and act on it as an operator.

Read-only except :meth:`MeshInspector.kick` and :meth:`MeshInspector.broadcast`,
which send ordinary mesh messages (WIRE.md §1, §6). It never joins the mesh: it does
not heartbeat, so it cannot become the leader or be reported dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..errors import MeshError
from ..keys import MeshKeys, RegistryKeys
from ..mesh_messages import encode
from ..registry.redis import parse_client_value
from ..settings import RedisSettings, create_redis_client

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "ClientEntry",
    "MeshInspector",
    "NodeEntry",
    "UnknownMeshError",
    "client_mesh_key",
]

#: The mesh key MeshClientService / MeshSrpcServer use for a user's ``mesh_key``.
CLIENT_MESH_PREFIX = "_mc:"
_SCAN_COUNT = 500
# The "did you mean" SCAN looks at this many keys at most: it must stay cheap on a
# Redis holding millions of keys.
_DISCOVERY_KEYS = 100_000
_KICK_TIMEOUT = 5.0


def client_mesh_key(key: str) -> str:
    """``desk`` → ``_mc:desk`` (already prefixed keys are kept)."""
    return key if key.startswith(CLIENT_MESH_PREFIX) else f"{CLIENT_MESH_PREFIX}{key}"


class UnknownMeshError(MeshError):
    """No live node under the mesh key; ``candidates`` are mesh keys that have some."""

    def __init__(self, prefix: str, key: str, candidates: list[str], complete: bool) -> None:
        shown = ", ".join(candidates) if candidates else "none found"
        more = "" if complete else " (the search stopped early: Redis holds many keys)"
        super().__init__(
            f"no live nodes under prefix {prefix!r}, mesh key {key!r} — did you mean: {shown}?"
            f"{more}"
        )
        self.candidates = candidates


@dataclass(frozen=True)
class NodeEntry:
    """One node: id, hostname, seconds since its last heartbeat, leader, its client count."""

    node_id: int
    hostname: str
    heartbeat_age: float
    leader: bool | None
    clients: int | None


@dataclass(frozen=True)
class ClientEntry:
    """One client's registry entry (``state`` is ``active`` or ``pending``)."""

    client_id: str
    node_id: int
    connected_at: int
    state: str
    metadata: Any


class MeshInspector:
    """One mesh (``key`` as given to MeshSrpcServer) on one Redis; ``await aclose()``."""

    def __init__(self, settings: RedisSettings, key: str) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.key = key
        self.mesh_key = client_mesh_key(key)
        self.keys = MeshKeys(self.prefix, self.mesh_key)
        self.registry_keys = RegistryKeys(self.prefix, self.mesh_key)
        self.clients_key = self.registry_keys.clients
        self._redis: Redis = create_redis_client(
            settings, socket_connect_timeout=3.0, socket_timeout=10.0
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._redis.aclose()

    async def now_ms(self) -> int:
        """Redis server time in ms (the clock heartbeats are scored with)."""
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def nodes(self) -> list[NodeEntry]:
        """Every registered node; raises UnknownMeshError when there is none."""
        beats = cast(
            "list[tuple[bytes, float]]",
            await self._redis.zrange(self.keys.heartbeats, 0, -1, withscores=True),
        )
        if not beats:
            candidates, complete = await self.mesh_keys()
            raise UnknownMeshError(self.prefix, self.key, candidates, complete)
        names = await self._redis.hgetall(self.keys.nodes)
        hostnames = {_text(k): _text(v) for k, v in names.items()}
        leader_raw = await self._redis.get(self.keys.leader)
        leader = int(leader_raw) if leader_raw is not None else None
        now = await self.now_ms()
        ids = sorted(int(_text(member)) for member, _ in beats)
        scores = {int(_text(member)): float(score) for member, score in beats}
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.scard(self.node_clients_key(node_id))
            counts = await pipe.execute()
        return [
            NodeEntry(
                node_id=node_id,
                hostname=hostnames.get(str(node_id), "?"),
                heartbeat_age=max(0.0, (now - scores[node_id]) / 1000),
                leader=None if leader is None else node_id == leader,
                clients=int(count),
            )
            for node_id, count in zip(ids, counts, strict=True)
        ]

    def node_clients_key(self, node_id: int) -> str:
        """The set of clients ``node_id`` owns."""
        return self.registry_keys.node_clients(node_id)

    async def mesh_keys(self) -> tuple[list[str], bool]:
        """Mesh keys with registered nodes under this prefix, found by a bounded SCAN;
        and whether the scan was complete. Client-service meshes are shown without ``_mc:``."""
        pattern = f"{self.prefix}:mesh:*:heartbeats"
        found: set[str] = set()
        cursor, seen = 0, 0
        while True:
            cursor, batch = await self._redis.scan(cursor, match=pattern, count=1000)
            seen += 1000
            for raw in batch:
                name = _text(raw)[len(f"{self.prefix}:mesh:") : -len(":heartbeats")]
                found.add(name.removeprefix(CLIENT_MESH_PREFIX))
            if cursor == 0:
                return sorted(found), True
            if seen >= _DISCOVERY_KEYS:
                return sorted(found), False

    async def clients(
        self, *, node: int | None = None, where: dict[str, str] | None = None
    ) -> AsyncIterator[ClientEntry]:
        """Active clients, streamed by HSCAN (or SSCAN of one node's set with ``node``),
        filtered by metadata ``where`` (key → value as text). May repeat none: HSCAN
        can return a field twice, so seen ids are remembered."""
        seen: set[str] = set()
        if node is None:
            scan = self._redis.hscan_iter(self.clients_key, count=_SCAN_COUNT)
            async for field, raw in scan:
                entry = _entry(_text(field), raw)
                if entry is not None and entry.client_id not in seen and _matches(entry, where):
                    seen.add(entry.client_id)
                    yield entry
            return
        batch: list[str] = []
        async for member in self._redis.sscan_iter(self.node_clients_key(node), count=_SCAN_COUNT):
            batch.append(_text(member))
            if len(batch) >= _SCAN_COUNT:
                async for entry in self._fetch(batch, node, where, seen):
                    yield entry
                batch = []
        async for entry in self._fetch(batch, node, where, seen):
            yield entry

    async def _fetch(
        self, ids: list[str], node: int, where: dict[str, str] | None, seen: set[str]
    ) -> AsyncIterator[ClientEntry]:
        ids = [client_id for client_id in ids if client_id not in seen]
        if not ids:
            return
        values = await self._redis.hmget(self.clients_key, ids)
        for client_id, raw in zip(ids, values, strict=True):
            entry = None if raw is None else _entry(client_id, raw)
            if entry is not None and entry.node_id == node and _matches(entry, where):
                seen.add(client_id)
                yield entry

    async def client(self, client_id: str) -> ClientEntry | None:
        """One client, pending ones included; None when unknown."""
        raw = await self._redis.hget(self.clients_key, client_id)
        if raw is None:
            return None
        return _entry(client_id, raw, pending=True)

    async def subscribe_events(self) -> Any:
        """A pubsub already subscribed to the events channel (so nothing published
        after this returns is missed); read it with :func:`read_event`."""
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.keys.events)
        # The confirmation: once read, the subscription is live on the server.
        while await pubsub.get_message(timeout=1.0) is None:
            pass
        return pubsub

    async def kick(self, client_id: str, *, timeout: float = _KICK_TIMEOUT) -> tuple[int, bool]:
        """Ask the client's node to disconnect it: (node id, kicked).

        Raises LookupError for an unknown client, MeshError when the node does not
        answer or has no ``opsKick`` handler (a TypeScript node).
        """
        entry = await self.client(client_id)
        if entry is None:
            raise LookupError(client_id)
        # An id of our own for the reply inbox; it is never heartbeated, so no node
        # ever lists it.
        sender = int(await self._redis.incr(self.keys.next_id))
        request_id = str(uuid.uuid4())
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.keys.inbox(sender))
        try:
            while await pubsub.get_message(timeout=1.0) is None:
                pass
            payload = encode(
                {
                    "requestId": request_id,
                    "senderInstanceId": sender,
                    "type": "opsKick",
                    "data": {"clientId": client_id},
                    "timeoutMs": round(timeout * 1000),
                }
            )
            receivers = await self._redis.publish(self.keys.inbox(entry.node_id), payload)
            if not receivers:
                raise MeshError(f"node {entry.node_id} is not listening (dead?)")
            async with asyncio.timeout(timeout):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    reply = json.loads(message["data"])
                    if not isinstance(reply, dict) or reply.get("requestId") != request_id:
                        continue
                    if not reply.get("reply"):
                        continue  # a request heartbeat
                    if "error" in reply:
                        error = str(reply["error"])
                        if error.startswith("MESH_NO_HANDLER:"):
                            error = "the node cannot kick (not a meshsrpc Python node?)"
                        raise MeshError(f"node {entry.node_id}: {error}")
                    data = reply.get("data")
                    return entry.node_id, isinstance(data, dict) and data.get("kicked") is True
        except TimeoutError:
            raise MeshError(f"node {entry.node_id} did not answer within {timeout} s") from None
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def broadcast(self, type: str, data: Any) -> int:
        """Publish a broadcast as sender 0 (no node has that id); the nodes it reached."""
        payload = encode({"broadcast": True, "senderInstanceId": 0, "type": type, "data": data})
        return int(await self._redis.publish(self.keys.broadcast, payload))


async def read_event(pubsub: Any, timeout: float) -> dict[str, Any] | None:
    """The next event from :meth:`MeshInspector.subscribe_events`, or None after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
        if message is None or message.get("type") != "message":
            continue
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            event = json.loads(message["data"])
            if isinstance(event, dict):
                return event
    return None


def _entry(client_id: str, raw: bytes | str, *, pending: bool = False) -> ClientEntry | None:
    client = parse_client_value(client_id, raw)
    if client is not None:
        return ClientEntry(
            client_id, client.node_id, client.connected_at, "active", client.metadata
        )
    if not pending:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("nodeId"), int):
        return None
    metadata = value.get("metadata") if value.get("hasMetadata", True) else None
    return ClientEntry(
        client_id,
        value["nodeId"],
        int(value.get("connectedAt") or 0),
        str(value.get("state", "active")),
        metadata,
    )


def _matches(entry: ClientEntry, where: dict[str, str] | None) -> bool:
    if not where:
        return True
    meta = entry.metadata
    if not isinstance(meta, dict):
        return False
    for name, wanted in where.items():
        if name not in meta:
            return False
        value = meta[name]
        text = value if isinstance(value, str) else json.dumps(value)
        if text != wanted:
            return False
    return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
