"""The client registry in Redis, wire-compatible with TypeScript nodes (WIRE.md §2).

Keys: ``<P>:mesh:<key>:clients`` (hash clientId → JSON value) and
``<P>:mesh:<key>:node:<nodeId>:clients`` (set of clientIds). Every mutation is one
Lua script (``*.lua`` next to this file), so concurrent nodes never interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, cast

from .._lua import lua_source
from ..errors import ClientConflictError, RedisConfigurationError
from ..keys import RegistryKeys
from ..settings import RedisLike, create_redis_client, resolve_redis_settings
from .base import RegisteredClient, TMeta
from .metadata import encode_metadata, now_ms

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["MeshClientRedisRegistry", "parse_client_value"]

logger = logging.getLogger(__name__)

# Batch size for HSCAN/SSCAN/HMGET: big enough to keep round trips few, small enough
# that no single reply blocks Redis on a registry with millions of clients.
_SCAN_COUNT = 500

# At most this many registry commands in flight per backend: redis-py's pool raises
# (not waits) beyond its 100 connections, and a burst of connects must queue, not fail.
_MAX_IN_FLIGHT = 64

_CONFLICT = 2
_SUPERSEDED = 1


def parse_client_value(client_id: str, raw: bytes | str) -> RegisteredClient[Any] | None:
    """Parse one clients-hash value; None for pending or unparsable entries.

    Accepts what TypeScript nodes write (cjson escapes like ``\\/``, numbers such as
    ``1.2345678901235e+16``, a missing ``state`` meaning active).
    """
    entry = _decode(raw)
    if not isinstance(entry, dict):
        if entry is _UNPARSABLE:
            logger.warning("skipping unparsable registry value for client %r", client_id)
        return None
    if entry.get("state", "active") != "active":
        return None
    node_id = entry.get("nodeId")
    connected_at = entry.get("connectedAt")
    # Fast path for what every writer puts there; _as_int for the rest.
    if type(node_id) is not int or type(connected_at) is not int:
        node_id, connected_at = _as_int(node_id), _as_int(connected_at)
        if node_id is None or connected_at is None:
            logger.warning("skipping registry value without nodeId/connectedAt for %r", client_id)
            return None
    # hasMetadata=false means "no metadata" (None); a writer that omits the flag
    # is taken at its word that ``metadata`` is the value.
    metadata = entry.get("metadata")
    if not entry.get("hasMetadata", metadata is not None):
        metadata = None
    return RegisteredClient(client_id, node_id, connected_at, metadata)


_UNPARSABLE: Any = object()
# The decoder's C scanner (an instance attribute typeshed does not declare).
_scan_json = cast("Callable[[str, int], tuple[Any, int]]", vars(json.JSONDecoder())["scan_once"])


def _decode(raw: bytes | str) -> Any:
    """One JSON value; _UNPARSABLE if it is not exactly one.

    The C scanner directly: a registry listing parses thousands of values, and
    ``json.loads`` spends about half its time on encoding detection and checks.
    """
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        value, end = _scan_json(text, 0)
    except (UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
        return _UNPARSABLE
    except (StopIteration, ValueError):
        value, end = _UNPARSABLE, -1
    if end == len(text):
        return value
    try:  # surrounding whitespace, or garbage: the strict path decides
        return json.loads(text)
    except (ValueError, RecursionError):
        return _UNPARSABLE


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _client_id(value: bytes | str) -> str | None:
    """A client id read from Redis; None (with a warning) when it is not UTF-8.

    Every writer stores ids as UTF-8; anything else was written by hand or by a broken
    peer, and must not make a whole listing or a dead node's report fail.
    """
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        logger.warning("skipping registry entry whose client id is not UTF-8: %r", value[:100])
        return None


class MeshClientRedisRegistry(Generic[TMeta]):
    """Registry backend on Redis, sharing keys and semantics with TypeScript nodes.

    ``redis`` is RedisSettings, a URL, or None (environment, scope ``MESH``). The
    connection opens lazily; call :meth:`aclose` when done.
    """

    def __init__(self, key: str, *, redis: RedisLike = None) -> None:
        settings = resolve_redis_settings(redis)
        if settings.is_memory:
            raise RedisConfigurationError(
                "MeshClientRedisRegistry needs a real Redis; use MeshClientMemoryRegistry "
                "for memory:// meshes"
            )
        self.key = key
        self._keys = RegistryKeys(settings.key_prefix, key)
        self.clients_key = self._keys.clients
        self._node_prefix = self._keys.node_prefix
        self._redis: Redis = create_redis_client(settings)
        self._in_flight = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._register = self._script("register")
        self._activate = self._script("activate")
        self._unregister = self._script("unregister")
        self._update_metadata = self._script("update_metadata")
        self._cleanup_node = self._script("cleanup_node")

    def node_key(self, node_id: int) -> str:
        """The set of clients owned by ``node_id``."""
        return self._keys.node_clients(node_id)

    async def register(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Make ``node_id`` the owner (active); see MeshClientRegistryBackend.register."""
        return await self._write(client_id, node_id, metadata, allow_supersede, "active")

    async def reserve(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Register in the hidden ``pending`` state, settling conflicts and supersedes now."""
        return await self._write(client_id, node_id, metadata, allow_supersede, "pending")

    async def activate(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Make this node's reservation visible; False if another node took the client."""
        text = encode_metadata(metadata)
        async with self._in_flight:
            done = await self._activate(
                keys=[self.clients_key, self.node_key(node_id)],
                args=[client_id, node_id, text or "null", "0" if text is None else "1"],
            )
        return bool(done)

    async def unregister(self, client_id: str, node_id: int) -> bool:
        """Remove the client if ``node_id`` owns it."""
        async with self._in_flight:
            removed = await self._unregister(
                keys=[self.clients_key, self.node_key(node_id)], args=[client_id, node_id]
            )
        return bool(removed)

    async def update_metadata(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Replace the metadata if ``node_id`` owns the client; keeps connected_at and state."""
        text = encode_metadata(metadata)
        async with self._in_flight:
            done = await self._update_metadata(
                keys=[self.clients_key],
                args=[client_id, node_id, text or "null", "0" if text is None else "1"],
            )
        return bool(done)

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """One HGET; None when unknown, pending or unparsable."""
        async with self._in_flight:
            raw = await self._redis.hget(self.clients_key, client_id)
        return None if raw is None else self._parse(client_id, raw)

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client, via HSCAN (never one huge HGETALL).

        HSCAN returns every field present for the whole scan at least once, so
        clients churning meanwhile cannot hide stable ones; duplicates are dropped.
        """
        found: dict[str, RegisteredClient[TMeta]] = {}
        async with self._in_flight:
            scan = self._redis.hscan_iter(self.clients_key, count=_SCAN_COUNT)
            async for field, raw in scan:
                client_id = _client_id(field)
                if client_id is not None and client_id not in found:
                    client = self._parse(client_id, raw)
                    if client is not None:
                        found[client_id] = client
        return list(found.values())

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns: SSCAN its set, HMGET the values in batches."""
        found: dict[str, RegisteredClient[TMeta]] = {}
        members: list[str] = []
        async with self._in_flight:
            scan = self._redis.sscan_iter(self.node_key(node_id), count=_SCAN_COUNT)
            async for member in scan:
                client_id = _client_id(member)
                if client_id is not None:
                    members.append(client_id)
            for start in range(0, len(members), _SCAN_COUNT):
                await self._collect(members[start : start + _SCAN_COUNT], node_id, found)
        return list(found.values())

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` still owns and delete its set; return them."""
        async with self._in_flight:
            reply = await self._cleanup_node(
                keys=[self.clients_key, self.node_key(node_id)], args=[node_id]
            )
        flat = cast("list[bytes]", reply)
        removed: list[RegisteredClient[TMeta]] = []
        # The script has removed them all: one bad entry must not lose the others' report.
        for i in range(0, len(flat) - 1, 2):
            client_id = _client_id(flat[i])
            client = None if client_id is None else self._parse(client_id, flat[i + 1])
            if client is not None:
                removed.append(client)
        return removed

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()

    async def _write(
        self, client_id: str, node_id: int, metadata: TMeta, allow_supersede: bool, state: str
    ) -> int | None:
        text = encode_metadata(metadata)
        async with self._in_flight:
            reply = await self._register(
                keys=[self.clients_key, self.node_key(node_id)],
                args=[
                    client_id,
                    node_id,
                    text or "null",
                    "0" if text is None else "1",
                    self._node_prefix,
                    now_ms(),
                    "1" if allow_supersede else "0",
                    state,
                ],
            )
        outcome = cast("list[int]", reply)
        if outcome[0] == _CONFLICT:
            raise ClientConflictError(client_id, int(outcome[1]))
        if outcome[0] == _SUPERSEDED:
            return int(outcome[1])
        return None

    async def _collect(
        self, client_ids: Iterable[str], node_id: int, found: dict[str, RegisteredClient[TMeta]]
    ) -> None:
        ids = [c for c in client_ids if c not in found]
        if not ids:
            return
        values = await self._redis.hmget(self.clients_key, ids)
        for client_id, raw in zip(ids, values, strict=True):
            if raw is None:
                continue
            client = self._parse(client_id, raw)
            # The set and the hash change together, but re-check ownership anyway.
            if client is not None and client.node_id == node_id:
                found[client_id] = client

    def _parse(self, client_id: str, raw: bytes | str) -> RegisteredClient[TMeta] | None:
        return cast("RegisteredClient[TMeta] | None", parse_client_value(client_id, raw))

    def _script(self, name: str) -> AsyncScript:
        return self._redis.register_script(lua_source(__package__, name))
