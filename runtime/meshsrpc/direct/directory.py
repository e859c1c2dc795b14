"""Where nodes find each other's data-plane address: the hash ``P:mesh:K:direct``.

A key of its own, beside the keys TypeScript nodes read (they never see it): field =
instance id, value = ``{"host": str, "port": int, "tls": bool}``. A node writes its
entry when it joins (and again when it rejoins), removes it when it leaves; the
cleanup leader removes the entries of dead nodes. A node without an entry (a
TypeScript node, an older Python node, direct channels off) is reached through Redis.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..settings import RedisSettings, create_redis_client

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Address", "Directory"]

logger = logging.getLogger("meshsrpc.direct")

# As the registry's keys: an abandoned mesh cleans itself up.
_SAFETY_TTL_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Address:
    """A node's advertised data-plane address."""

    host: str
    port: int
    tls: bool

    def encode(self) -> str:
        """The hash value."""
        return json.dumps({"host": self.host, "port": self.port, "tls": self.tls})

    @classmethod
    def decode(cls, raw: bytes | str) -> Address | None:
        """Parse a hash value; None when it is not a valid address."""
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        host, port, tls = value.get("host"), value.get("port"), value.get("tls", False)
        if not isinstance(host, str) or not host or not isinstance(port, int):
            return None
        if isinstance(port, bool) or not 0 < port < 65536 or not isinstance(tls, bool):
            return None
        return cls(host, port, tls)

    def __str__(self) -> str:
        return f"{'tls://' if self.tls else ''}{self.host}:{self.port}"


class Directory:
    """Reads and writes the ``direct`` hash of one mesh on its own small Redis client."""

    def __init__(self, settings: RedisSettings, key: str) -> None:
        self.key = key
        self._client: Redis = create_redis_client(
            settings, max_connections=4, socket_connect_timeout=2.0, socket_timeout=5.0
        )

    async def publish(self, instance_id: int, address: Address) -> None:
        """Write (or overwrite) this node's entry."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, str(instance_id), address.encode())
            pipe.pexpire(self.key, _SAFETY_TTL_MS)
            await pipe.execute()

    async def lookup(self, instance_id: int) -> Address | None:
        """The node's address, or None when it advertises none (or an invalid one)."""
        raw = await self._client.hget(self.key, str(instance_id))
        if raw is None:
            return None
        address = Address.decode(raw)
        if address is None:
            logger.warning("ignoring node %d's invalid direct address %r", instance_id, raw[:200])
        return address

    async def listed(self) -> set[int]:
        """The ids of every node with an entry."""
        fields = await self._client.hkeys(self.key)
        return {int(field) for field in fields if field.isdigit()}

    async def remove(self, *instance_ids: int) -> None:
        """Delete the entries of these nodes."""
        if instance_ids:
            await self._client.hdel(self.key, *(str(i) for i in instance_ids))

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()
