"""The standalone WebSocket transports (websockets, picows): choice, interop, HTTP and frames.

The rest of the SRPC suite runs on each transport (see conftest.py); these tests cover
what only shows at the WebSocket and HTTP level.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from meshsrpc import SrpcClient, SrpcServer, SrpcStream
from meshsrpc.srpc.auth import sign
from meshsrpc.srpc.transports.choice import TRANSPORT_ENV, choose_transport, picows_available
from meshsrpc.srpc.transports.websockets import WebsocketsTransport
from meshsrpc.testing import eventually
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
)
from tests.srpc._support import ClientFactory, ServerFactory, url_of

SECRET = "transport-secret"
PING = bytes.fromhex("920300")


def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    return UEchoResponse(message=f"Echo: {request.message}")


def signed_url(server: SrpcServer[ClientMessage, ServerMessage], cid: str = "raw") -> str:
    ts = str(int(time.time() * 1000))
    signature = sign(SECRET, "1", "1", ts, f"s-{cid}", cid)
    query = f"?authv=1&appv=1&ts={ts}&id=s-{cid}&cid={cid}&signature={signature}"
    return url_of(server) + query


async def close_code_of(ws: object) -> int | None:
    try:
        while True:
            await ws.recv()  # type: ignore[attr-defined]
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def http_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes to the listener; everything it answers until it hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


# --- choosing a transport -------------------------------------------------------------


def test_transport_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, "picows")
    assert choose_transport("websockets") == "websockets"


def test_transport_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, "websockets")
    assert choose_transport() == "websockets"


def test_auto_transport_is_picows_when_it_can_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TRANSPORT_ENV)
    assert picows_available()
    assert choose_transport() == "picows"
    assert choose_transport("auto") == "picows"
    assert choose_transport("websockets") == "websockets"


def test_auto_transport_is_websockets_when_picows_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TRANSPORT_ENV)
    monkeypatch.setitem(sys.modules, "picows", None)  # as for a package that fails to load
    assert not picows_available()
    assert choose_transport() == "websockets"


def test_asking_for_picows_when_it_cannot_be_imported_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picows", None)
    with pytest.raises(RuntimeError, match="needs the picows package"):
        choose_transport("picows")


async def test_server_and_client_fall_back_to_websockets_without_picows(
    make_server: ServerFactory, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRANSPORT_ENV)
    monkeypatch.setitem(sys.modules, "picows", None)
    server = await make_server(auth_secret=SECRET)
    server.register_message_handler("uEcho", echo)
    client = make_client(server, client_secret=SECRET)
    await client.connect()
    reply = await client.invoke("uEcho", UEchoRequest(message="w"))
    assert reply.message == "Echo: w"
    assert type(server._listener).__module__.startswith("websockets")
    assert client._session is not None
    assert isinstance(client._session.transport, WebsocketsTransport)


def test_auto_transport_is_websockets_when_compression_is_wanted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TRANSPORT_ENV)
    assert choose_transport(compression="deflate") == "websockets"


def test_picows_with_compression_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'deflate' compression"):
        choose_transport("picows", compression="deflate")


async def test_compressed_server_listens_on_websockets_by_default(
    make_server: ServerFactory, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRANSPORT_ENV)
    server = await make_server(auth_secret=SECRET, compression="deflate")
    server.register_message_handler("uEcho", echo)
    client = make_client(server, client_secret=SECRET)
    await client.connect()
    assert (await client.invoke("uEcho", UEchoRequest(message="z"))).message == "Echo: z"
    assert type(server._listener).__module__.startswith("websockets")


def test_unknown_transport_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown SRPC transport 'tornado'"):
        choose_transport("tornado")


# --- interop between the two implementations ------------------------------------------


@pytest.mark.parametrize(
    ("server_transport", "client_transport"),
    [("picows", "websockets"), ("websockets", "picows")],
)
async def test_client_and_server_on_different_transports_talk(
    make_server: ServerFactory,
    make_client: ClientFactory,
    server_transport: str,
    client_transport: str,
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    server.register_message_handler("uEcho", echo)
    await server.listen("127.0.0.1", 0, transport=server_transport)
    client = make_client(server, client_secret=SECRET, transport=client_transport)
    await client.connect()
    reply = await client.invoke("uEcho", UEchoRequest(message="across"))
    assert reply.message == "Echo: across"


async def test_listen_on_picows_serves_a_websockets_client(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    await server.listen("127.0.0.1", 0, transport="picows")
    async with ws_connect(signed_url(server), compression=None) as ws:
        assert await ws.recv() == PING


# --- HTTP before the upgrade ------------------------------------------------------------


async def test_picows_answers_a_malformed_request_with_400(make_server: ServerFactory) -> None:
    # (websockets hangs up without an answer.)
    server = await make_server(auth_secret=SECRET, listen=False)
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    answer = await http_exchange(server.port, b"NOT-HTTP\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_picows_answers_an_oversized_request_head_with_400(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    request = b"GET /srpc HTTP/1.1\r\n" + b"X-Filler: " + b"x" * (17 * 1024) + b"\r\n\r\n"
    answer = await http_exchange(server.port, request)
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_picows_answers_an_acceptable_request_with_a_head_over_16_kib_with_400(
    make_server: ServerFactory,
) -> None:
    # Read whole in one go, and acceptable (unsigned allowed): refused all the same, as
    # picows would hang up on it after the upgrade.
    server = await make_server(listen=False)
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    request = (
        b"GET /srpc?id=s&cid=c&appv=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nX-Filler: " + b"x" * (16 * 1024) + b"\r\n\r\n"
    )
    answer = await http_exchange(server.port, request)
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_picows_answers_a_request_head_still_arriving_past_the_limit_with_400(
    make_server: ServerFactory,
) -> None:
    # Most of the head is still unread when the answer goes: no reset overtakes it.
    server = await make_server(auth_secret=SECRET, listen=False)
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    request = b"GET /srpc?" + b"x" * (400 * 1024) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = await http_exchange(server.port, request)
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_picows_lets_go_of_a_refused_peer_that_stays_connected_at_the_handshake_timeout(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    server.handshake_timeout = 0.2  # type: ignore[attr-defined]
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /srpc?id=s&cid=c&appv=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.read()).startswith(b"HTTP/1.1 403 ")
        # Our side stays open: the server's end is closed all the same.
        await eventually(lambda: not server._listener._upgrading)
    finally:
        writer.close()


async def test_refusal_is_an_http_response_with_the_reason(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret=SECRET)
    assert server.port is not None
    request = (
        b"GET /srpc?id=s&cid=c&appv=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = await http_exchange(server.port, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert body.strip()  # the reason, for the client's error message


async def test_picows_drops_a_connection_that_sends_no_request(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    server.handshake_timeout = 0.2  # type: ignore[attr-defined]
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    assert await http_exchange(server.port, b"") == b""


async def test_picows_close_drops_connections_still_before_their_upgrade(
    make_server: ServerFactory,
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    await server.listen("127.0.0.1", 0, transport="picows")
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /srpc HTTP/1.1\r\n")  # an unfinished request head
    await writer.drain()
    async with asyncio.timeout(5):
        while not server._listener._upgrading:  # noqa: ASYNC110 - the listener's own state
            await asyncio.sleep(0.01)
        await server.close()
        try:
            assert await reader.read() == b""
        except ConnectionResetError:
            pass  # dropped (aborted), as it should be
    writer.close()


# --- frames -----------------------------------------------------------------------------


async def test_fragmented_message_arrives_whole(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret=SECRET)
    server.register_message_handler("uEcho", echo)
    request = bytes(ClientMessage(request_id="r1", u_echo_request=UEchoRequest(message="frag")))
    async with ws_connect(signed_url(server), compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        assert await ws.recv() == PING  # the answer to ours
        await ws.send([request[:3], request[3:7], request[7:]])
        reply = ServerMessage.parse(await ws.recv())  # type: ignore[arg-type]
    assert reply.request_id == "r1" and reply.u_echo_response.message == "Echo: frag"


async def test_message_beyond_the_websocket_limit_closes_with_4000_or_1009_on_picows(
    make_server: ServerFactory, srpc_transport: str
) -> None:
    # Beyond twice max_frame_size (and 64 KiB) the transport refuses the message itself:
    # websockets' 1009 is turned into SRPC's 4000; picows closes before we see it.
    server = await make_server(auth_secret=SECRET, max_frame_size=1000)
    async with ws_connect(signed_url(server), compression=None, max_size=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        await ws.send(b"\x00" * (65 * 1024))
        assert await close_code_of(ws) == (1009 if srpc_transport == "picows" else 4000)


async def test_close_code_and_reason_reach_a_picows_client(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret=SECRET)
    client: SrpcClient[ClientMessage, ServerMessage] = make_client(
        server, client_secret=SECRET, transport="picows", enable_reconnect=False
    )
    causes: list[str] = []
    client.register_disconnect_handler(causes.append)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    await server.close_stream(stream, 4003, "timeout", "bye")
    await server.stream_closed(stream)
    async with asyncio.timeout(5):
        while not causes:  # noqa: ASYNC110 - the client's own state
            await asyncio.sleep(0.01)
    assert causes == ["timeout"]
