"""Calls in both directions over real sockets: replies, errors, timeouts, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from meshsrpc import SrpcError, SrpcStream
from websockets.asyncio.client import connect as ws_connect

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
    DRequestDataRequest,
    ServerMessage,
    UComplexRequest,
    UComplexResponse,
    UEchoRequest,
    UEchoResponse,
    UErrorRequest,
    UErrorResponse,
    USlowRequest,
    USlowResponse,
)
from tests.srpc._support import ClientFactory, ServerFactory, eventually, url_of


async def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    return UEchoResponse(message=f"Echo: {request.message}")


async def test_first_frame_is_ping_and_requests_get_replies(make_server: ServerFactory) -> None:
    server = await make_server()
    server.register_message_handler("uEcho", echo)
    async with ws_connect(url_of(server) + "?id=s1&cid=raw&appv=1", compression=None) as ws:
        first = await ws.recv()
        assert first == bytes.fromhex("920300")
        await ws.send(bytes.fromhex("0a09756e646566696e65641000920300"))  # upstream-style pong
        assert ServerMessage.parse(await ws.recv(decode=False)).ping_pong is not None  # ping back
        await ws.send(
            bytes(ClientMessage(request_id="r1", u_echo_request=UEchoRequest(message="hi")))
        )
        reply = ServerMessage.parse(await ws.recv(decode=False))
        assert reply.to_dict() == {
            "requestId": "r1",
            "reply": True,
            "uEchoResponse": {"message": "Echo: hi"},
        }


async def test_client_invokes_server(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    server.register_message_handler("uEcho", echo)

    async def complex_handler(stream: SrpcStream, request: UComplexRequest) -> UComplexResponse:
        return UComplexResponse(result=request.string_field, count=len(request.array_field))

    server.register_message_handler("uComplex", complex_handler)
    client = make_client(server)
    await client.connect()
    assert client.is_connected
    assert await client.invoke("uEcho", UEchoRequest(message="hello")) == UEchoResponse(
        message="Echo: hello"
    )
    got = await client.invoke("uComplex", UComplexRequest(string_field="x", array_field=["a", "b"]))
    assert got == UComplexResponse(result="x", count=2)
    with pytest.raises(TypeError, match="UEchoRequest"):
        await client.invoke("uEcho", UComplexRequest())
    with pytest.raises(ValueError, match="unknown call prefix"):
        await client.invoke("uNope", UEchoRequest())


async def test_user_and_application_errors(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()

    async def fail(stream: SrpcStream, request: UErrorRequest) -> UErrorResponse:
        if request.user_error:
            raise SrpcError(request.error_message, is_user_error=True)
        raise RuntimeError(request.error_message)

    server.register_message_handler("uError", fail)
    client = make_client(server)
    await client.connect()
    with pytest.raises(SrpcError) as user:
        await client.invoke("uError", UErrorRequest(error_message="Invalid input", user_error=True))
    assert user.value.message == "Invalid input" and user.value.is_user_error
    with pytest.raises(SrpcError) as app:
        await client.invoke("uError", UErrorRequest(error_message="boom", user_error=False))
    assert app.value.message.startswith("Internal server error (error id ")
    assert not app.value.is_user_error
    # No handler: the TypeScript peers' error text, then the prefix; the stream stays up.
    with pytest.raises(SrpcError) as unhandled:
        await client.invoke("uEcho", UEchoRequest(message="x"))
    assert unhandled.value.message == "Unhandled message type: uEcho"
    assert client.is_connected


async def test_server_invokes_client(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    client.register_message_handler(
        "dNotify", lambda r: DNotifyResponse(acknowledged=r.notification == "hi")
    )

    async def compute(request: DComputeRequest) -> DComputeResponse:
        if request.operation == "fail":
            raise SrpcError("bad operation", is_user_error=True)
        return DComputeResponse(result=request.number * 2)

    client.register_message_handler("dCompute", compute)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    assert await server.invoke(
        stream, "dNotify", DNotifyRequest(notification="hi")
    ) == DNotifyResponse(acknowledged=True)
    assert await server.invoke(stream, "dCompute", DComputeRequest(number=21)) == DComputeResponse(
        result=42
    )
    with pytest.raises(SrpcError) as err:
        await server.invoke(stream, "dCompute", DComputeRequest(operation="fail"))
    assert err.value.is_user_error and err.value.message == "bad operation"
    with pytest.raises(SrpcError, match="dRequestData"):
        await server.invoke(
            stream,
            "dRequestData",
            DRequestDataRequest(),
        )


async def test_invoke_timeouts_on_both_sides(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    release = asyncio.Event()

    async def slow(stream: SrpcStream, request: USlowRequest) -> USlowResponse:
        await release.wait()
        return USlowResponse()

    server.register_message_handler("uSlow", slow)
    client = make_client(server)

    async def slow_notify(request: DNotifyRequest) -> DNotifyResponse:
        await release.wait()
        return DNotifyResponse()

    client.register_message_handler("dNotify", slow_notify)
    await client.connect()
    with pytest.raises(TimeoutError):
        await client.invoke("uSlow", USlowRequest(), timeout=0.2)
    stream = server.streams_by_client_id["c1"]
    with pytest.raises(TimeoutError):
        await server.invoke(stream, "dNotify", DNotifyRequest(), timeout=0.2)
    # The late replies are dropped; neither side treats them as a protocol error.
    release.set()
    await asyncio.sleep(0.2)
    assert client.is_connected and stream.is_open


async def test_hanging_handler_does_not_block_others(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    never = asyncio.Event()

    async def hang(stream: SrpcStream, request: USlowRequest) -> USlowResponse:
        await never.wait()
        return USlowResponse()

    server.register_message_handler("uSlow", hang)
    server.register_message_handler("uEcho", echo)
    client = make_client(server)
    await client.connect()
    hanging = asyncio.create_task(client.invoke("uSlow", USlowRequest(), timeout=30))
    await asyncio.sleep(0.05)
    for i in range(5):
        assert (
            await client.invoke("uEcho", UEchoRequest(message=str(i)), timeout=2)
        ).message == f"Echo: {i}"
    assert not hanging.done()
    hanging.cancel()


async def test_concurrent_requests_on_one_stream(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()

    async def slow(stream: SrpcStream, request: USlowRequest) -> USlowResponse:
        await asyncio.sleep(request.delay_ms / 1000)
        return USlowResponse(message="done", actual_delay_ms=request.delay_ms)

    server.register_message_handler("uSlow", slow)
    client = make_client(server)
    await client.connect()
    results = await asyncio.gather(
        *(client.invoke("uSlow", USlowRequest(delay_ms=d)) for d in (200, 10, 100))
    )
    assert [r.actual_delay_ms for r in results] == [200, 10, 100]


def test_register_unknown_prefix_fails() -> None:
    from meshsrpc import SrpcServer

    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, allow_unsigned=True
    )
    with pytest.raises(ValueError, match="uNope"):
        server.register_message_handler("uNope", echo)
    with pytest.raises(ValueError):
        server.register_message_handler("dNotify", echo)


async def test_trace_context_propagates(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    from opentelemetry import trace

    server = await make_server()
    seen: list[trace.SpanContext] = []

    def traced_echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        seen.append(trace.get_current_span().get_span_context())
        return UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", traced_echo)
    client = make_client(server)
    await client.connect()
    await client.invoke("uEcho", UEchoRequest(message="untraced"))
    assert not seen[0].is_valid
    parent = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=trace.TraceFlags(1),
    )
    with trace.use_span(trace.NonRecordingSpan(parent)):
        await client.invoke("uEcho", UEchoRequest(message="traced"))
    assert seen[1].trace_id == parent.trace_id
    assert seen[1].span_id == parent.span_id
    assert seen[1].is_remote


async def test_close_lets_running_requests_answer(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(close_timeout=5.0)

    async def slow(stream: SrpcStream, request: USlowRequest) -> USlowResponse:
        await asyncio.sleep(request.delay_ms / 1000)
        return USlowResponse(message="finished", actual_delay_ms=request.delay_ms)

    server.register_message_handler("uSlow", slow)
    client = make_client(server, enable_reconnect=False)
    await client.connect()
    call = asyncio.create_task(client.invoke("uSlow", USlowRequest(delay_ms=300)))
    await asyncio.sleep(0.05)
    await server.close()
    assert (await call).message == "finished"
    await eventually(lambda: not client.is_connected)


async def test_async_context_managers() -> None:
    from meshsrpc import SrpcClient, SrpcServer

    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, allow_unsigned=True
    )
    async with server:
        server.register_message_handler("uEcho", echo)
        await server.listen("127.0.0.1", 0)
        client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
            url_of(server), ClientMessage, ServerMessage, "ctx"
        )
        async with client:
            assert (await client.invoke("uEcho", UEchoRequest(message="m"))).message == "Echo: m"
        assert not client.is_connected
    assert server.port is None and server.streams_by_id == {}


async def test_many_clients_leave_nothing_behind(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    server.register_message_handler("uEcho", echo)
    baseline = len(asyncio.all_tasks())
    clients = [make_client(server, f"c{i}", protocol_version=1 + i % 2) for i in range(40)]
    await asyncio.gather(*(c.connect() for c in clients))
    assert len(server.streams_by_client_id) == 40

    async def chat(i: int) -> None:
        for j in range(10):
            reply = await clients[i].invoke("uEcho", UEchoRequest(message=f"{i}-{j}"))
            assert reply.message == f"Echo: {i}-{j}"

    await asyncio.gather(*(chat(i) for i in range(40)))
    await asyncio.gather(*(c.disconnect() for c in clients))
    await eventually(lambda: server.streams_by_id == {} and server.streams_by_client_id == {})
    # Only the server's inactivity sweeper may remain.
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline + 1)


async def test_frames_sent_in_one_loop_iteration_share_a_write_and_all_arrive(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    server.register_message_handler("uEcho", echo)
    client = make_client(server)
    await client.connect()
    # Sent in one iteration: the first frame leaves at once, the rest in one write.
    results = await asyncio.gather(
        *(client.invoke("uEcho", UEchoRequest(message=str(i))) for i in range(50))
    )
    assert [r.message for r in results] == [f"Echo: {i}" for i in range(50)]


async def test_a_request_handler_runs_in_a_task_of_its_own(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    # A real task: asyncio.timeout() and task groups work from its first line (a
    # handler run inside the read callback, before any task, would break them).
    server = await make_server()
    tasks: list[asyncio.Task[Any] | None] = []

    async def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        async with asyncio.timeout(5):
            tasks.append(asyncio.current_task())
            await asyncio.sleep(0)
            return UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    client = make_client(server)
    await client.connect()
    for text in ("a", "b"):
        response = await client.invoke("uEcho", UEchoRequest(message=text))
        assert response.message == text
    assert None not in tasks and tasks[0] is not tasks[1]
