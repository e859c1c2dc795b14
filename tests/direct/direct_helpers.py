"""Helpers of the direct data-plane tests: fast timings, waiting, a raw inbox listener."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import LeaderOptions, MeshService
from redis.asyncio import Redis

SECRET = "direct-test-secret"

#: ``make_mesh(key="k", **options)``: a started MeshService (the fixture in conftest.py).
MakeMesh = Callable[..., Awaitable[MeshService]]

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.1,
    "node_ttl": 0.6,
    "request_timeout": 5.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}


class InboxSpy:
    """A plain Redis subscriber recording what is published to some channels."""

    def __init__(self, url: str, *channels: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._client = Redis.from_url(url)
        self._pubsub = self._client.pubsub()
        self._channels = channels
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InboxSpy:
        await self._pubsub.subscribe(*self._channels)
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()
        await self._client.aclose()

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] == "message":
                self.messages.append((message["channel"].decode(), message["data"]))
