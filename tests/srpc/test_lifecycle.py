"""Stream lifecycle: activation, connection/disconnect handlers, supersede, conflict, limits."""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import CloseCause, SrpcConflictError, SrpcError, SrpcStream
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
    USlowRequest,
    USlowResponse,
)
from tests.srpc._support import ClientFactory, ServerFactory, eventually, url_of

PING = bytes.fromhex("920300")


def raw_url(server: object, cid: str = "raw", extra: str = "") -> str:
    return url_of(server) + f"?id=s-{cid}&cid={cid}&appv=1{extra}"  # type: ignore[arg-type]


async def closed_code(ws: object) -> int | None:
    try:
        while True:
            await ws.recv()  # type: ignore[attr-defined]
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def test_requests_before_activation_are_queued_in_order(make_server: ServerFactory) -> None:
    server = await make_server()
    order: list[str] = []
    gate = asyncio.Event()

    async def on_connect(stream: SrpcStream) -> None:
        await gate.wait()
        order.append("connected")

    async def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        order.append(request.message)
        return UEchoResponse(message=request.message)

    server.register_connection_handler(on_connect)
    server.register_message_handler("uEcho", echo)
    async with ws_connect(raw_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        for i in range(3):
            await ws.send(
                bytes(
                    ClientMessage(request_id=f"r{i}", u_echo_request=UEchoRequest(message=str(i)))
                )
            )
        await asyncio.sleep(0.1)
        assert order == []
        gate.set()
        replies: list[str] = []
        while len(replies) < 3:
            frame = ServerMessage.parse(await ws.recv(decode=False))
            if frame.reply:
                replies.append(frame.request_id)
        assert order == ["connected", "0", "1", "2"]
        assert replies == ["r0", "r1", "r2"]


async def test_connection_handler_may_invoke_the_client(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    answers: list[DNotifyResponse] = []

    async def on_connect(stream: SrpcStream) -> None:
        assert not stream.is_activated
        answers.append(
            await server.invoke(stream, "dNotify", DNotifyRequest(notification="welcome"))
        )

    server.register_connection_handler(on_connect)
    client = make_client(server)
    client.register_message_handler(
        "dNotify", lambda r: DNotifyResponse(acknowledged=r.notification == "welcome")
    )
    await client.connect()
    await eventually(lambda: bool(answers))
    assert answers == [DNotifyResponse(acknowledged=True)]
    await eventually(lambda: server.streams_by_client_id["c1"].is_activated)


async def test_raising_connection_handler_disconnects(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    causes: list[CloseCause] = []

    def on_connect(stream: SrpcStream) -> None:
        raise RuntimeError("not today")

    server.register_connection_handler(on_connect)
    server.register_disconnect_handler(lambda stream, cause: causes.append(cause))
    client = make_client(server, enable_reconnect=False)
    client_causes: list[CloseCause] = []
    client.register_disconnect_handler(client_causes.append)
    await client.connect()
    await eventually(lambda: bool(client_causes) and bool(causes))
    assert not client.is_connected
    assert server.streams_by_id == {}
    assert causes == ["disconnect"]


async def test_normal_disconnect_cause(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    causes: list[tuple[str, CloseCause]] = []
    connected: list[str] = []
    server.register_connection_handler(lambda s: connected.append(s.client_id))
    server.register_disconnect_handler(lambda s, cause: causes.append((s.client_id, cause)))
    client = make_client(server)
    client_causes: list[CloseCause] = []
    client.register_disconnect_handler(client_causes.append)
    await client.connect()
    await eventually(lambda: connected == ["c1"])
    stream = server.streams_by_client_id["c1"]
    assert stream.last_ping_at is not None and stream.connected_at > 0
    await client.disconnect()
    await eventually(lambda: causes == [("c1", "disconnect")])
    assert client_causes == ["disconnect"]
    assert server.streams_by_id == {} and server.streams_by_client_id == {}


async def test_v1_second_connection_supersedes(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    causes: list[tuple[str, CloseCause]] = []
    server.register_disconnect_handler(lambda s, cause: causes.append((s.id, cause)))
    first = make_client(server, protocol_version=1)
    first_causes: list[CloseCause] = []
    first.register_disconnect_handler(first_causes.append)
    await first.connect()
    old = server.streams_by_client_id["c1"]
    second = make_client(server, protocol_version=1)
    await second.connect()
    await eventually(lambda: causes == [(old.id, "supersede")])
    assert first_causes == ["supersede"]
    assert server.streams_by_client_id["c1"] is not old
    assert list(server.streams_by_id) == [server.streams_by_client_id["c1"].id]
    await asyncio.sleep(0.3)
    assert not first.is_connected  # superseded clients do not fight back
    assert second.is_connected


async def test_v2_conflict_refuses_newcomer(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    causes: list[CloseCause] = []
    server.register_disconnect_handler(lambda s, cause: causes.append(cause))
    first = make_client(server)
    await first.connect()
    original = server.streams_by_client_id["c1"]
    second = make_client(server)
    with pytest.raises(SrpcConflictError):
        await second.connect()
    await asyncio.sleep(0.3)
    assert not second.is_connected  # no auto-reconnect
    assert first.is_connected and server.streams_by_client_id["c1"] is original
    assert causes == []  # the refused newcomer never got announced
    async with ws_connect(raw_url(server, "c1", "&_v=2"), compression=None) as ws:
        assert await closed_code(ws) == 4001


async def test_v2_with_supersede(make_server: ServerFactory, make_client: ClientFactory) -> None:
    server = await make_server()
    causes: list[CloseCause] = []
    server.register_disconnect_handler(lambda s, cause: causes.append(cause))
    first = make_client(server)
    await first.connect()
    second = make_client(server)
    await second.connect(supersede=True)
    await eventually(lambda: causes == ["supersede"])
    await eventually(lambda: not first.is_connected)
    assert second.is_connected
    assert server.streams_by_client_id["c1"].supersede


@pytest.mark.parametrize(
    "bad",
    [
        "text",
        bytes.fromhex("0a056d"),  # truncated
        bytes.fromhex("920300c23e030a0161"),  # two oneof members
        bytes(ClientMessage(request_id="unknown", reply=True, d_notify_response=DNotifyResponse())),
        # byteStreamOperation.write, a message field, as the varint 2**32: betterproto2
        # alone would keep the int, and writing it back would allocate 4 GiB of zeros.
        bytes.fromhex("9a0306108080808010"),
        bytes.fromhex("0a0172c23e020805"),  # uEchoRequest.message, a string, as a varint
    ],
    ids=[
        "text",
        "truncated",
        "two-oneof",
        "unknown-reply",
        "message-as-varint",
        "string-as-varint",
    ],
)
async def test_bad_frames_close_with_4000_only_that_stream(
    make_server: ServerFactory, make_client: ClientFactory, bad: bytes | str
) -> None:
    server = await make_server()
    causes: list[tuple[str, CloseCause]] = []
    server.register_disconnect_handler(lambda s, cause: causes.append((s.client_id, cause)))
    server.register_message_handler("uEcho", lambda s, r: UEchoResponse(message=r.message))
    other = make_client(server, "other")
    await other.connect()
    async with ws_connect(raw_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        await ws.send(bad)
        assert await closed_code(ws) == 4000
    await eventually(lambda: causes == [("raw", "badArg")])
    assert other.is_connected
    assert (await other.invoke("uEcho", UEchoRequest(message="ok"))).message == "ok"


async def test_frame_size_limit(make_server: ServerFactory) -> None:
    server = await make_server(max_frame_size=1000)
    async with ws_connect(raw_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        await ws.send(
            bytes(ClientMessage(request_id="r", u_echo_request=UEchoRequest(message="x" * 2000)))
        )
        assert await closed_code(ws) == 4000


async def test_in_flight_limit(make_server: ServerFactory, make_client: ClientFactory) -> None:
    server = await make_server(max_in_flight=3)
    never = asyncio.Event()

    async def hang(stream: SrpcStream, request: USlowRequest) -> USlowResponse:
        await never.wait()
        return USlowResponse()

    server.register_message_handler("uSlow", hang)
    other = make_client(server, "other")
    await other.connect()
    async with ws_connect(raw_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        for i in range(4):
            await ws.send(bytes(ClientMessage(request_id=f"r{i}", u_slow_request=USlowRequest())))
        assert await closed_code(ws) == 4000
    assert other.is_connected


async def test_inactivity_timeout(make_server: ServerFactory) -> None:
    server = await make_server(inactivity_timeout=0.3)
    causes: list[CloseCause] = []
    server.register_disconnect_handler(lambda s, cause: causes.append(cause))
    async with ws_connect(raw_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        code = await asyncio.wait_for(closed_code(ws), 5)
    assert code == 4003
    await eventually(lambda: causes == ["timeout"])


async def test_client_pings_keep_stream_alive(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(inactivity_timeout=0.5)
    client = make_client(server, ping_interval=0.1, pong_timeout=0.4)
    await client.connect()
    await asyncio.sleep(1.2)
    assert client.is_connected and "c1" in server.streams_by_client_id


async def test_client_closes_4003_without_pongs(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server, ping_interval=0.1, pong_timeout=0.3, enable_reconnect=False)
    causes: list[CloseCause] = []
    client.register_disconnect_handler(causes.append)
    server_causes: list[CloseCause] = []
    server.register_disconnect_handler(lambda s, cause: server_causes.append(cause))
    await client.connect()
    # Make the server deaf: it stops answering pings.
    stream = server.streams_by_client_id["c1"]
    assert stream.session is not None
    stream.session.send = lambda data: None  # type: ignore[method-assign]
    await eventually(lambda: causes == ["timeout"], timeout=5)
    await eventually(lambda: server_causes == ["timeout"], timeout=5)


async def test_invoke_on_closed_stream_fails(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    await client.disconnect()
    await eventually(lambda: not stream.is_open)
    with pytest.raises(SrpcError):
        await server.invoke(stream, "dNotify", DNotifyRequest())
    with pytest.raises(SrpcError, match="not connected"):
        await client.invoke("uEcho", UEchoRequest())


async def test_trigger_connection_check(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server, connection_check_timeout=0.3, enable_reconnect=False)
    causes: list[CloseCause] = []
    client.register_disconnect_handler(causes.append)
    await client.connect()
    client.trigger_connection_check()  # the server answers: nothing happens
    await asyncio.sleep(0.5)
    assert client.is_connected
    stream = server.streams_by_client_id["c1"]
    assert stream.session is not None
    stream.session.send = lambda data: None  # type: ignore[method-assign]
    client.trigger_connection_check()
    await eventually(lambda: causes == ["timeout"], timeout=5)


async def test_long_close_reasons_are_cut_to_123_bytes(make_server: ServerFactory) -> None:
    server = await make_server()

    def on_connect(stream: SrpcStream) -> None:
        raise RuntimeError("é" * 300)

    server.register_connection_handler(on_connect)
    async with ws_connect(raw_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            assert exc.rcvd.code == 1011
            assert 0 < len(exc.rcvd.reason.encode()) <= 123
            assert exc.rcvd.reason.startswith("Connection handler failed: é")
