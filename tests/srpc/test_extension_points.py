"""The protected hooks MeshSrpcServer builds on: establish, activate, close, close_stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from meshsrpc import CloseCause, SrpcConflictError, SrpcError, SrpcServer, SrpcStream
from meshsrpc.srpc.stream import StreamMeta

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, UEchoRequest, UEchoResponse
from tests.srpc._support import ClientFactory, eventually


class HookedServer(SrpcServer[ClientMessage, ServerMessage]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ClientMessage, ServerMessage, **{"allow_unsigned": True, **kwargs})
        self.calls: list[tuple[str, str, Any]] = []
        self.establish_error: Exception | None = None
        self.activation_gate = asyncio.Event()
        self.activation_gate.set()

    async def _on_stream_established(self, stream: SrpcStream) -> None:
        self.calls.append(("established", stream.client_id, None))
        if self.establish_error is not None:
            raise self.establish_error

    async def _on_stream_activating(self, stream: SrpcStream) -> None:
        self.calls.append(("activating", stream.client_id, stream.is_activated))
        await self.activation_gate.wait()

    async def _on_stream_activated(self, stream: SrpcStream) -> None:
        self.calls.append(("activated", stream.client_id, stream.is_activated))

    async def _on_stream_closed(self, stream: SrpcStream, cause: CloseCause) -> None:
        self.calls.append(("closed", stream.client_id, cause))


@pytest.fixture
async def hooked() -> Any:
    server = HookedServer()
    server.register_message_handler("uEcho", lambda s, r: UEchoResponse(message=r.message))
    await server.listen("127.0.0.1", 0)
    yield server
    await server.close()


def url(server: SrpcServer[Any, Any]) -> str:
    return f"ws://127.0.0.1:{server.port}/srpc"


async def test_hook_order(hooked: HookedServer, make_client: ClientFactory) -> None:
    order: list[str] = []
    hooked.register_connection_handler(lambda s: order.append("connection handler"))
    hooked.register_disconnect_handler(lambda s, cause: order.append(f"disconnect handler {cause}"))
    client = make_client(url(hooked))
    await client.connect()
    await eventually(lambda: len(hooked.calls) == 3)
    await client.disconnect()
    await eventually(lambda: len(hooked.calls) == 4 and len(order) == 2)
    assert hooked.calls == [
        ("established", "c1", None),
        ("activating", "c1", False),
        ("activated", "c1", True),
        ("closed", "c1", "disconnect"),
    ]
    assert order == ["connection handler", "disconnect handler disconnect"]


async def test_established_conflict_refuses_with_4001(
    hooked: HookedServer, make_client: ClientFactory
) -> None:
    hooked.establish_error = SrpcConflictError("owned by node 7")
    causes: list[CloseCause] = []
    hooked.register_disconnect_handler(lambda s, cause: causes.append(cause))
    with pytest.raises(SrpcConflictError):
        await make_client(url(hooked)).connect()
    await eventually(lambda: ("closed", "c1", "conflict") in hooked.calls)
    assert causes == []
    assert hooked.streams_by_client_id == {}


async def test_established_failure_fails_connect_promptly(
    hooked: HookedServer, make_client: ClientFactory
) -> None:
    hooked.establish_error = RuntimeError("registry down")
    started = time.monotonic()
    with pytest.raises(SrpcError):
        await make_client(url(hooked), connect_timeout=10).connect()
    assert time.monotonic() - started < 5
    await eventually(lambda: hooked.streams_by_id == {})


async def test_activation_gate_holds_requests(
    hooked: HookedServer, make_client: ClientFactory
) -> None:
    hooked.activation_gate.clear()
    client = make_client(url(hooked))
    await client.connect()
    call = asyncio.create_task(client.invoke("uEcho", UEchoRequest(message="queued")))
    await asyncio.sleep(0.2)
    assert not call.done()
    stream = hooked.streams_by_client_id["c1"]
    assert not stream.is_activated
    hooked.activation_gate.set()
    assert (await asyncio.wait_for(call, 5)).message == "queued"
    assert stream.is_activated


async def test_close_stream_with_code_and_cause(
    hooked: HookedServer, make_client: ClientFactory
) -> None:
    server_causes: list[CloseCause] = []
    hooked.register_disconnect_handler(lambda s, cause: server_causes.append(cause))
    client = make_client(url(hooked))
    client_causes: list[CloseCause] = []
    client.register_disconnect_handler(client_causes.append)
    await client.connect()
    stream = hooked.streams_by_client_id["c1"]
    await hooked.close_stream(stream, 4002, "supersede", "moved to node 2")
    await hooked.stream_closed(stream)
    assert server_causes == ["supersede"]
    await eventually(lambda: client_causes == ["supersede"])
    assert ("closed", "c1", "supersede") in hooked.calls


async def test_meta_change_callback_on_a_live_stream(
    hooked: HookedServer, make_client: ClientFactory
) -> None:
    client = make_client(url(hooked), client_meta={"room": "a"})
    await client.connect()
    stream = hooked.streams_by_client_id["c1"]
    assert isinstance(stream.meta, StreamMeta)
    seen: list[dict[str, Any]] = []
    stream.meta.on_change = lambda meta: seen.append(dict(meta))
    stream.meta["room"] = "b"
    del stream.meta["room"]
    assert seen == [{"room": "b"}, {}]


async def test_same_client_reconnect_keeps_newest_in_map(
    hooked: HookedServer, make_client: ClientFactory
) -> None:
    first = make_client(url(hooked), protocol_version=1)
    await first.connect()
    old = hooked.streams_by_client_id["c1"]
    second = make_client(url(hooked), protocol_version=1)
    await second.connect()
    new = hooked.streams_by_client_id["c1"]
    assert new is not old
    await hooked.stream_closed(old)
    # The old stream's cleanup must not remove the new one.
    assert hooked.streams_by_client_id["c1"] is new
    assert ("closed", "c1", "supersede") in hooked.calls
