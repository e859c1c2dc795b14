"""Helpers of the MeshSrpcServer tests: fast timings, polling, a probing registry backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import MeshClientRedisRegistry, MeshSrpcServer, SrpcClient
from meshsrpc.testing import FAST_DYING_MESH, FAST_MESH, eventually

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

# Short timings keep the suite fast. The node TTL stays generous so that a loaded CI
# box never declares a live node dead; tests about dead nodes use DEATH_FAST.
FAST: dict[str, Any] = FAST_MESH
DEATH_FAST: dict[str, Any] = FAST_DYING_MESH

Node = MeshSrpcServer[ClientMessage, ServerMessage, Any]
Client = SrpcClient[ClientMessage, ServerMessage]
MakeNode = Callable[..., Awaitable[Node]]
MakeClient = Callable[..., Client]


def url_of(node: Node) -> str:
    """The ws:// URL of a listening node."""
    return f"ws://127.0.0.1:{node.port}/srpc"


async def settle(turns: float = 0.2) -> None:
    """Let background steps run (only before asserting that something did NOT happen)."""
    await asyncio.sleep(turns)


class Recorder:
    """Collects lifecycle callback calls: ``events`` is a list of (client_id, metadata)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def __call__(self, client_id: str, metadata: Any) -> None:
        self.events.append((client_id, metadata))

    def ids(self) -> list[str]:
        return [client_id for client_id, _ in self.events]


class ProbeBackend:
    """A real Redis registry backend that records calls and can fail, refuse or hold them.

    - ``calls``: (method, client_id) for every call;
    - ``fail``: methods that raise RuntimeError (nothing written);
    - ``refuse``: methods that return False without writing;
    - ``hold(method)``: the next calls of ``method`` wait until ``release(method)``;
      ``entered[method]`` is set when one is waiting.
    """

    def __init__(self, inner: MeshClientRedisRegistry[Any]) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []
        self.fail: set[str] = set()
        self.refuse: set[str] = set()
        self._gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}

    def hold(self, method: str) -> None:
        self._gates[method] = asyncio.Event()
        self.entered[method] = asyncio.Event()

    def release(self, method: str) -> None:
        self._gates.pop(method).set()

    def count(self, method: str, client_id: str | None = None) -> int:
        return sum(1 for m, c in self.calls if m == method and client_id in (None, c))

    async def _run(self, method: str, client_id: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((method, client_id))
        gate = self._gates.get(method)
        if gate is not None:
            self.entered[method].set()
            await gate.wait()
        if method in self.fail:
            raise RuntimeError(f"{method} failed on purpose")
        if method in self.refuse:
            return False
        return await getattr(self.inner, method)(client_id, *args, **kwargs)

    async def register(
        self, client_id: str, node_id: int, metadata: Any, *, allow_supersede: bool = True
    ) -> int | None:
        return await self._run(
            "register", client_id, node_id, metadata, allow_supersede=allow_supersede
        )

    async def reserve(
        self, client_id: str, node_id: int, metadata: Any, *, allow_supersede: bool = True
    ) -> int | None:
        return await self._run(
            "reserve", client_id, node_id, metadata, allow_supersede=allow_supersede
        )

    async def activate(self, client_id: str, node_id: int, metadata: Any) -> bool:
        return await self._run("activate", client_id, node_id, metadata)

    async def unregister(self, client_id: str, node_id: int) -> bool:
        return await self._run("unregister", client_id, node_id)

    async def update_metadata(self, client_id: str, node_id: int, metadata: Any) -> bool:
        return await self._run("update_metadata", client_id, node_id, metadata)

    async def get_client(self, client_id: str) -> Any:
        return await self.inner.get_client(client_id)

    async def list_clients(self) -> Any:
        return await self.inner.list_clients()

    async def list_clients_for_node(self, node_id: int) -> Any:
        return await self.inner.list_clients_for_node(node_id)

    async def cleanup_node(self, node_id: int) -> Any:
        return await self.inner.cleanup_node(node_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


def stored_client(raw: bytes | None) -> dict[str, Any] | None:
    """The JSON value of one clients-hash field."""
    return None if raw is None else dict(json.loads(raw))


async def join(node: Node, client: Client, **connect_options: Any) -> None:
    """Connect ``client`` to ``node`` and wait until the node has activated it.

    ``connect()`` returns at the server's first ping; activation (and with it the
    registration) follows once the connection handlers have run.
    """
    await client.connect(**connect_options)

    def active() -> bool:
        stream = node.streams_by_client_id.get(client.client_id)
        return stream is not None and stream.is_activated

    await eventually(active)
