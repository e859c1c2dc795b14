"""Transports: ASGI under uvicorn (Starlette, FastAPI), TLS, reconnect, slow readers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from meshsrpc import CloseCause, SrpcError, SrpcServer, SrpcStream
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tests._tls import tls_contexts
from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
)
from tests.srpc._support import ClientFactory, ServerFactory, eventually


def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    return UEchoResponse(message=f"Echo: {request.message}")


class Uvicorn:
    """A uvicorn server on a free loopback port, inside the test's event loop."""

    def __init__(self, app: Any) -> None:
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            ws="websockets-sansio",
            lifespan="on",
            log_level="warning",
        )
        self.server = uvicorn.Server(self.config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Uvicorn:
        self.task = asyncio.create_task(self.server.serve())
        await eventually(lambda: self.server.started)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)


@pytest.fixture
async def srpc() -> AsyncIterator[SrpcServer[ClientMessage, ServerMessage]]:
    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, allow_unsigned=True
    )
    server.register_message_handler("uEcho", echo)
    yield server
    await server.close()


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_asgi_app_under_uvicorn(
    srpc: SrpcServer[ClientMessage, ServerMessage], make_client: ClientFactory, framework: str
) -> None:
    app: Any
    if framework == "starlette":
        app = Starlette(routes=[WebSocketRoute("/srpc", srpc.asgi)])
        path = "/srpc"
    else:
        app = FastAPI()
        app.mount("/ws", srpc.asgi)  # mounted apps serve every path below the mount
        path = "/ws/srpc"
    causes: list[CloseCause] = []
    srpc.register_disconnect_handler(lambda s, cause: causes.append(cause))
    async with Uvicorn(app) as web:
        url = f"ws://127.0.0.1:{web.port}{path}"
        client = make_client(url)
        client.register_message_handler("dNotify", lambda r: DNotifyResponse(acknowledged=True))
        await client.connect()
        assert (await client.invoke("uEcho", UEchoRequest(message="asgi"))).message == "Echo: asgi"
        stream = srpc.streams_by_client_id["c1"]
        assert stream.address.startswith("127.0.0.1:")
        assert await srpc.invoke(stream, "dNotify", DNotifyRequest()) == DNotifyResponse(
            acknowledged=True
        )
        # A second client with the same id (v2) is refused with 4001.
        from meshsrpc import SrpcConflictError

        with pytest.raises(SrpcConflictError):
            await make_client(url).connect()
        # Refusals before the upgrade are real HTTP statuses.
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(url + "?cid=x&appv=1", compression=None):
                pass
        assert refused.value.response.status_code == 400
        with pytest.raises(SrpcError):
            await make_client(url + "?x=1", "bad", protocol_version=2, app_version="").connect()
        await client.disconnect()
        await eventually(lambda: causes == ["disconnect"])


async def test_asgi_app_alone_with_lifespan(make_client: ClientFactory) -> None:
    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, auth_secret="k"
    )
    server.register_message_handler("uEcho", echo)
    async with Uvicorn(server.asgi) as web:
        url = f"ws://127.0.0.1:{web.port}/srpc"
        with pytest.raises(SrpcError, match="403"):
            await make_client(url, client_secret="wrong").connect()
        client = make_client(url, client_secret="k", enable_reconnect=False)
        await client.connect()
        assert (await client.invoke("uEcho", UEchoRequest(message="x"))).message == "Echo: x"
    # uvicorn's lifespan shutdown closed the SRPC server and its streams.
    await eventually(lambda: not client.is_connected)
    assert server.streams_by_id == {}


async def test_tls_listen(
    make_server: ServerFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    server_ctx, client_ctx = tls_contexts(tmp_path)
    server = await make_server(listen=False)
    server.register_message_handler("uEcho", echo)
    await server.listen("127.0.0.1", 0, ssl=server_ctx)
    client = make_client(f"wss://localhost:{server.port}/srpc", ssl=client_ctx)
    await client.connect()
    assert (await client.invoke("uEcho", UEchoRequest(message="tls"))).message == "Echo: tls"
    # Plain ws:// to the TLS port does not get through.
    with pytest.raises(SrpcError):
        await make_client(
            f"ws://127.0.0.1:{server.port}/srpc", "plain", connect_timeout=2
        ).connect()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_client_reconnects_after_server_restart(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    port = _free_port()
    first = await make_server(listen=False)
    first.register_message_handler("uEcho", echo)
    await first.listen("127.0.0.1", port)
    client = make_client(
        f"ws://127.0.0.1:{port}/srpc", reconnect_delay=0.05, max_reconnect_delay=0.2
    )
    events: list[str] = []
    client.register_connection_handler(lambda: events.append("connected"))
    client.register_disconnect_handler(lambda cause: events.append(f"disconnected:{cause}"))
    await client.connect()
    await eventually(lambda: events == ["connected"])
    await first.close()
    await eventually(lambda: "disconnected:disconnect" in events)
    await asyncio.sleep(0.3)  # a few failed attempts while nothing listens
    second = await make_server(listen=False)
    second.register_message_handler("uEcho", echo)
    await second.listen("127.0.0.1", port)
    await eventually(lambda: client.is_connected, timeout=10)
    assert events == ["connected", "disconnected:disconnect", "connected"]
    assert (await client.invoke("uEcho", UEchoRequest(message="back"))).message == "Echo: back"
    assert "c1" in second.streams_by_client_id


async def _slow_reader_scenario(
    server: SrpcServer[Any, Any], url: str, make_client: ClientFactory
) -> None:
    causes: list[tuple[str, CloseCause]] = []
    server.register_disconnect_handler(lambda s, cause: causes.append((s.client_id, cause)))
    reader = make_client(url, "reader")
    reader.register_message_handler("dNotify", lambda r: DNotifyResponse(acknowledged=True))
    await reader.connect()
    # A raw client that stops reading after the handshake (tiny receive queue).
    async with ws_connect(
        url + "?id=s&cid=lazy&appv=1", compression=None, max_queue=1, close_timeout=0.5
    ) as ws:
        assert await ws.recv() == bytes.fromhex("920300")
        await ws.send(bytes.fromhex("920300"))
        await eventually(lambda: "lazy" in server.streams_by_client_id)
        lazy = server.streams_by_client_id["lazy"]
        active = server.streams_by_client_id["reader"]
        big = DNotifyRequest(notification="x" * 60_000)
        calls = []
        for _ in range(1000):
            if not lazy.is_open:
                break
            calls.append(asyncio.create_task(server.invoke(lazy, "dNotify", big, timeout=30)))
            # The same load to a client that reads is fine.
            assert await server.invoke(active, "dNotify", big) == DNotifyResponse(acknowledged=True)
        await eventually(lambda: ("lazy", "timeout") in causes, timeout=15)
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, SrpcError) for r in results)
        assert len(calls) > 10  # it was the unread backlog, not the first burst, that tripped it
    assert reader.is_connected and causes == [("lazy", "timeout")]


async def test_slow_reader_is_dropped(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(max_send_buffer=512 * 1024)
    await _slow_reader_scenario(server, f"ws://127.0.0.1:{server.port}/srpc", make_client)


async def test_slow_reader_is_dropped_under_asgi(make_client: ClientFactory) -> None:
    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, max_send_buffer=512 * 1024, allow_unsigned=True
    )
    async with Uvicorn(server.asgi) as web:
        await _slow_reader_scenario(server, f"ws://127.0.0.1:{web.port}/srpc", make_client)
