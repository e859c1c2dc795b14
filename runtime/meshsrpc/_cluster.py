"""One-time start-up of a ``RedisCluster`` client shared by concurrent tasks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster

__all__ = ["ClusterReady"]


class ClusterReady:
    """Loads the slot map once before the first command.

    Many commands issued at once on a fresh ``RedisCluster`` race its lazy
    initialisation: some reach the wrong primary, the MOVED reply makes redis-py
    reconnect, and a command already run (an INCR) is sent again. Awaiting this first
    makes every first command wait for the map instead.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._done = False

    async def __call__(self) -> None:
        """Return once the client knows the cluster's slot map."""
        if self._done:
            return
        async with self._lock:
            if not self._done:
                await self._client.initialize()
                self._done = True
