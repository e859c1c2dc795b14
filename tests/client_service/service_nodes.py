"""Test nodes for MeshClientService: a service plus the 'streams' it holds, short timings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import ClientDisconnectedError, LeaderOptions, RedisSettings, RegisteredClient
from meshsrpc.client_service import MeshClientService
from meshsrpc.testing import FAST_DYING_MESH, eventually

__all__ = ["FAST", "Answer", "Node", "echo", "eventually"]

#: A local client's answer to a call: answer(type, data, timeout) -> result.
Answer = Callable[[str, Any, float | None], Awaitable[Any]]

FAST = {
    **FAST_DYING_MESH,
    "request_timeout": 5.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.2),
}


async def echo(type: str, data: Any, timeout: float | None) -> Any:
    """A client that answers every call with what it got."""
    return {"type": type, "data": data, "timeout": timeout}


class Node:
    """One node: a MeshClientService whose ``client_invoke_fn`` calls local 'streams'."""

    def __init__(self, key: str, redis: RedisSettings | str, **options: Any) -> None:
        self.streams: dict[str, Answer] = {}
        self.calls: list[tuple[str, str, Any, float | None]] = []
        self.kicked: list[str] = []
        self.orphaned: list[tuple[int, list[RegisteredClient[Any]]]] = []
        self.service: MeshClientService[Any] = MeshClientService(
            key, self._invoke, redis=redis, **{**FAST, **options}
        )
        self.service.on_client_superseded(self._kick)
        self.service.on_node_clients_orphaned(lambda n, c: self.orphaned.append((n, c)))

    @property
    def id(self) -> int:
        return self.service.instance_id

    async def connect(self, client_id: str, metadata: Any = None, answer: Answer = echo) -> bool:
        """A client connects here: hold its 'stream' and register it."""
        self.streams[client_id] = answer
        return await self.service.register_client(client_id, metadata)

    async def _invoke(self, client_id: str, type: str, data: Any, timeout: float | None) -> Any:
        self.calls.append((client_id, type, data, timeout))
        answer = self.streams.get(client_id)
        if answer is None:
            raise ClientDisconnectedError(client_id)
        return await answer(type, data, timeout)

    def _kick(self, client_id: str) -> bool:
        self.kicked.append(client_id)
        return self.streams.pop(client_id, None) is not None
