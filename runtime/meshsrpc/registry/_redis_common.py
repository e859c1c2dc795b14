"""What the two Redis registries share: parsing stored values, and every script call and
scan once a client's keys are known.

The single-instance registry keeps one clients hash and one set per node (WIRE.md §2);
the cluster registry keeps the same pair per bucket. Both name a pair by its *base*
(``<P>:mesh:<key>``, or a bucket's hash-tagged prefix): ``<base>:clients`` and
``<base>:node:<nodeId>:clients``, so the Lua scripts and the scans are the same.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, cast

from .._lua import lua_source
from ..errors import ClientConflictError
from .base import RegisteredClient, TMeta
from .metadata import encode_metadata, now_ms

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["MAX_IN_FLIGHT", "RedisRegistryScripts", "parse_client_value"]

logger = logging.getLogger("meshsrpc.registry.redis")

# Batch size for HSCAN/SSCAN/HMGET: big enough to keep round trips few, small enough
# that no single reply blocks Redis on a registry with millions of clients.
_SCAN_COUNT = 500

#: At most this many registry commands in flight per backend: redis-py's pool raises
#: (not waits) beyond its 100 connections, and a burst of connects must queue, not fail.
MAX_IN_FLIGHT = 64

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


class RedisRegistryScripts(Generic[TMeta]):
    """The registry operations on a pair of keys: the Lua scripts, HGET and the scans.

    A subclass says where a client's pair lives (:meth:`_base_of`) and bounds the
    commands in flight (``in_flight``, entered around every command).
    """

    def __init__(
        self, client: Redis | RedisCluster, in_flight: AbstractAsyncContextManager[Any]
    ) -> None:
        self._redis = client
        self._in_flight = in_flight
        self._register = self._script("register")
        self._activate = self._script("activate")
        self._unregister = self._script("unregister")
        self._update_metadata = self._script("update_metadata")
        self._cleanup_node = self._script("cleanup_node")

    def _base_of(self, client_id: str) -> str:
        """The base of the key pair holding ``client_id``."""
        raise NotImplementedError

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
        base = self._base_of(client_id)
        async with self._in_flight:
            done = await self._activate(
                keys=[f"{base}:clients", f"{base}:node:{node_id}:clients"],
                args=[client_id, node_id, text or "null", "0" if text is None else "1"],
            )
        return bool(done)

    async def unregister(self, client_id: str, node_id: int) -> bool:
        """Remove the client if ``node_id`` owns it."""
        base = self._base_of(client_id)
        async with self._in_flight:
            removed = await self._unregister(
                keys=[f"{base}:clients", f"{base}:node:{node_id}:clients"],
                args=[client_id, node_id],
            )
        return bool(removed)

    async def update_metadata(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Replace the metadata if ``node_id`` owns the client; keeps connected_at and state."""
        text = encode_metadata(metadata)
        async with self._in_flight:
            done = await self._update_metadata(
                keys=[f"{self._base_of(client_id)}:clients"],
                args=[client_id, node_id, text or "null", "0" if text is None else "1"],
            )
        return bool(done)

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """One HGET; None when unknown, pending or unparsable."""
        async with self._in_flight:
            raw = await self._redis.hget(f"{self._base_of(client_id)}:clients", client_id)
        return None if raw is None else self._parse(client_id, raw)

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()

    async def _write(
        self, client_id: str, node_id: int, metadata: TMeta, allow_supersede: bool, state: str
    ) -> int | None:
        text = encode_metadata(metadata)
        base = self._base_of(client_id)
        async with self._in_flight:
            reply = await self._register(
                keys=[f"{base}:clients", f"{base}:node:{node_id}:clients"],
                args=[
                    client_id,
                    node_id,
                    text or "null",
                    "0" if text is None else "1",
                    # The previous owner's set: same base (on a cluster, the same slot).
                    f"{base}:node:",
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

    async def _scan_clients(self, base: str) -> list[RegisteredClient[TMeta]]:
        """Every active client of one pair, via HSCAN (never one huge HGETALL).

        HSCAN returns every field present for the whole scan at least once, so
        clients churning meanwhile cannot hide stable ones; duplicates are dropped.
        """
        found: dict[str, RegisteredClient[TMeta]] = {}
        async with self._in_flight:
            scan = self._redis.hscan_iter(f"{base}:clients", count=_SCAN_COUNT)
            async for field, raw in scan:
                client_id = _client_id(field)
                if client_id is not None and client_id not in found:
                    client = self._parse(client_id, raw)
                    if client is not None:
                        found[client_id] = client
        return list(found.values())

    async def _scan_node(self, base: str, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns in one pair: SSCAN its set, HMGET the
        values in batches."""
        clients_key = f"{base}:clients"
        found: dict[str, RegisteredClient[TMeta]] = {}
        async with self._in_flight:
            members = [
                client_id
                async for member in self._redis.sscan_iter(
                    f"{base}:node:{node_id}:clients", count=_SCAN_COUNT
                )
                if (client_id := _client_id(member)) is not None
            ]
            for start in range(0, len(members), _SCAN_COUNT):
                ids = [c for c in members[start : start + _SCAN_COUNT] if c not in found]
                if not ids:
                    continue
                values = await self._redis.hmget(clients_key, ids)
                for client_id, raw in zip(ids, values, strict=True):
                    client = None if raw is None else self._parse(client_id, raw)
                    # The set and the hash change together, but re-check ownership anyway.
                    if client is not None and client.node_id == node_id:
                        found[client_id] = client
        return list(found.values())

    async def _clean_up(self, base: str, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` still owns in one pair, delete its set; return them."""
        async with self._in_flight:
            reply = await self._cleanup_node(
                keys=[f"{base}:clients", f"{base}:node:{node_id}:clients"], args=[node_id]
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

    def _parse(self, client_id: str, raw: bytes | str) -> RegisteredClient[TMeta] | None:
        return cast("RegisteredClient[TMeta] | None", parse_client_value(client_id, raw))

    def _script(self, name: str) -> AsyncScript:
        return self._redis.register_script(lua_source(__package__, name))
