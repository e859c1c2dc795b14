"""The transport contract (``transports/base.py``): a transport of one's own, public names only.

Two transports written here from the contract alone: a plain listener on the
``websockets`` library (real SDK clients connect to it) and an in-memory connection.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from urllib.parse import parse_qsl, urlsplit

import pytest
from meshsrpc.errors import SrpcError
from meshsrpc.srpc.auth import (
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeRequest,
)
from meshsrpc.srpc.stream import SrpcStream
from meshsrpc.srpc.transports.base import ConnectionAcceptor, Transport
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.generated.sgnl24.TestRpc import UEchoRequest, UEchoResponse
from tests.srpc._support import ClientFactory, ServerFactory, eventually

SECRET = "contract-secret"


class PlainTransport:
    """A :class:`Transport` over a ``websockets`` connection, without any tuning."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    @property
    def remote_address(self) -> str:
        host, port = self.connection.remote_address[:2]
        return f"{host}:{port}"

    @property
    def close_code(self) -> int | None:
        return self.connection.close_code

    async def recv(self) -> bytes | str | None:
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def send(self, data: bytes) -> None:
        await self.connection.send(data)

    def send_nowait(self, data: bytes) -> bool:
        return False

    async def close(self, code: int, reason: str) -> None:
        await self.connection.close(code, reason)

    def abort(self) -> None:
        self.connection.transport.abort()

    def buffered_amount(self) -> int:
        return self.connection.transport.get_write_buffer_size()


async def listen_plain(acceptor: ConnectionAcceptor) -> Server:
    """A listener of our own: the acceptor decides each upgrade, then serves it."""
    decided: dict[ServerConnection, tuple[HandshakeRequest, HandshakeAccepted]] = {}

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        handshake = HandshakeRequest(
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers={name.lower(): value for name, value in request.headers.raw_items()},
            remote_address=str(connection.remote_address),
        )
        decision = await acceptor.authorize(handshake)
        if isinstance(decision, HandshakeRejected):
            return connection.respond(decision.status, decision.reason)
        decided[connection] = (handshake, decision)
        return None

    async def handler(connection: ServerConnection) -> None:
        transport: Transport = PlainTransport(connection)
        await acceptor.serve(transport, *decided.pop(connection))

    return await serve(handler, "127.0.0.1", 0, process_request=process_request)


class MemoryTransport:
    """A :class:`Transport` with no network: it keeps what is sent; the test hangs up."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self._inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self._close_code: int | None = None

    @property
    def remote_address(self) -> str:
        return "memory"

    @property
    def close_code(self) -> int | None:
        return self._close_code

    async def recv(self) -> bytes | str | None:
        return await self._inbox.get()

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    def send_nowait(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    async def close(self, code: int, reason: str) -> None:
        self.hang_up(code)

    def abort(self) -> None:
        self.hang_up(1006)

    def buffered_amount(self) -> int:
        return 0

    def hang_up(self, code: int = 1006) -> None:
        """The connection ends (the peer went away, or we closed it)."""
        if self._close_code is None:
            self._close_code = code
            self._inbox.put_nowait(None)


def upgrade_request(client_id: str, path: str = "/srpc") -> HandshakeRequest:
    return HandshakeRequest(
        path=path,
        query={"id": f"stream-of-{client_id}", "cid": client_id, "appv": "1.0.0"},
        headers={},
        remote_address="memory",
    )


def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    return UEchoResponse(message=f"Echo: {request.message}")


async def test_a_listener_of_ones_own_serves_sdk_clients_through_the_acceptor(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    server.register_message_handler("uEcho", echo)
    listener = await listen_plain(server.acceptor)
    try:
        port = listener.sockets[0].getsockname()[1]
        client = make_client(f"ws://127.0.0.1:{port}/srpc", client_secret=SECRET)
        await client.connect()
        reply = await client.invoke("uEcho", UEchoRequest(message="contract"))
        assert reply.message == "Echo: contract"
        assert list(server.streams_by_client_id) == ["c1"]
    finally:
        await server.close()
        listener.close()
        await listener.wait_closed()


async def test_a_listener_of_ones_own_refuses_what_the_acceptor_refuses(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(auth_secret=SECRET, listen=False)
    listener = await listen_plain(server.acceptor)
    try:
        port = listener.sockets[0].getsockname()[1]
        client = make_client(f"ws://127.0.0.1:{port}/srpc", client_secret="wrong")
        with pytest.raises(SrpcError, match="HTTP 403"):
            await client.connect()
        assert not server.streams_by_id
    finally:
        listener.close()
        await listener.wait_closed()


async def test_the_acceptor_refuses_a_request_off_the_servers_path_with_404(
    make_server: ServerFactory,
) -> None:
    server = await make_server(listen=False)
    decision = await server.acceptor.authorize(upgrade_request("c1", path="/elsewhere"))
    assert decision == HandshakeRejected(404, "Not found")


async def test_the_acceptor_refuses_every_request_with_503_once_the_server_drains(
    make_server: ServerFactory,
) -> None:
    server = await make_server(listen=False)
    await server.drain()
    decision = await server.acceptor.authorize(upgrade_request("c1"))
    assert isinstance(decision, HandshakeRejected) and decision.status == 503


async def test_the_acceptor_reads_the_servers_settings_when_asked(
    make_server: ServerFactory,
) -> None:
    server = await make_server(listen=False, max_frame_size=4096)
    assert server.acceptor.max_frame_size == 4096
    server.handshake_timeout = 2.5
    assert (server.acceptor.path, server.acceptor.handshake_timeout) == ("/srpc", 2.5)


async def test_an_in_memory_connection_is_served_until_its_peer_goes(
    make_server: ServerFactory,
) -> None:
    server = await make_server(listen=False)
    gone: list[tuple[str, str]] = []
    server.register_disconnect_handler(lambda stream, cause: gone.append((stream.client_id, cause)))
    request = upgrade_request("memory-client")
    decision = await server.acceptor.authorize(request)
    assert isinstance(decision, HandshakeAccepted)
    transport = MemoryTransport()
    serving = asyncio.create_task(server.acceptor.serve(transport, request, decision))
    await eventually(lambda: "memory-client" in server.streams_by_client_id)
    await eventually(lambda: len(transport.sent) == 1)  # the server's first ping
    transport.hang_up()
    await serving
    assert gone == [("memory-client", "disconnect")]
    assert not server.streams_by_id


async def test_closing_the_server_closes_an_in_memory_connection_with_1000(
    make_server: ServerFactory,
) -> None:
    server = await make_server(listen=False)
    request = upgrade_request("memory-client")
    decision = await server.acceptor.authorize(request)
    assert isinstance(decision, HandshakeAccepted)
    transport = MemoryTransport()
    serving = asyncio.create_task(server.acceptor.serve(transport, request, decision))
    await eventually(lambda: "memory-client" in server.streams_by_client_id)
    await server.close()
    await serving
    assert transport.close_code == 1000


class Headers(dict[str, str]):
    """Request headers that can be watched with a weak reference."""


async def test_a_served_connection_keeps_no_reference_to_its_handshake(
    make_server: ServerFactory,
) -> None:
    # Headers and all would otherwise stay in every idle connection's memory.
    server = await make_server(listen=False)
    headers = Headers({"user-agent": "x" * 1000})
    request = HandshakeRequest(
        path="/srpc",
        query={"id": "s", "cid": "memory-client", "appv": "1.0.0"},
        headers=headers,
        remote_address="memory",
    )
    watched = weakref.ref(headers)
    decision = await server.acceptor.authorize(request)
    assert isinstance(decision, HandshakeAccepted)
    transport = MemoryTransport()
    serving = asyncio.create_task(server.acceptor.serve(transport, request, decision))
    del headers, request, decision
    await eventually(lambda: "memory-client" in server.streams_by_client_id)
    gc.collect()
    assert watched() is None
    transport.hang_up()
    await serving
