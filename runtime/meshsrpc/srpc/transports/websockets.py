"""SRPC on ``websockets`` (v13+ asyncio API): the standalone server and the client's socket."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import weakref
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from ..auth import HandshakeAccepted, HandshakeRejected, HandshakeRequest, parse_query
from ..protocol import CLOSE_CODES
from .accept_errors import ACCEPT_ERROR_LOG_INTERVAL, install_accept_error_filter
from .base import ConnectionAcceptor

__all__ = [
    "ACCEPT_ERROR_LOG_INTERVAL",
    "SrpcClientConnection",
    "WebsocketsTransport",
    "serve",
]

logger = logging.getLogger(__name__)

# Bytes of small frames held back until the end of an event-loop iteration, at most.
_CORK_LIMIT = 64 * 1024


def _half_close(connection: Connection) -> None:
    # As websockets' Connection.send_data does for the end-of-stream marker.
    transport = connection.transport
    if transport.can_write_eof():
        try:
            transport.write_eof()
        except Exception:  # pragma: no cover - as websockets: any error means closed
            pass
    else:  # pragma: no cover - TLS
        transport.close()


class _OversizeIsBadArg(Protocol):
    """websockets' protocol, closing with SRPC's 4000 (badArg) where it would send 1009.

    Frames over ``max_size`` never reach our own size check (websockets refuses them
    first); WIRE.md gives one code for every frame over the limit.
    """

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG:
            code, reason = CLOSE_CODES["badArg"], "Frame too large"
        super().fail(code, reason)


class _SrpcServerProtocol(_OversizeIsBadArg, ServerProtocol):
    pass


class _SrpcClientProtocol(_OversizeIsBadArg, ClientProtocol):
    pass


class _SrpcServerConnection(ServerConnection):
    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # serve() builds the protocol itself; same layout, one method more.
        if type(protocol) is ServerProtocol:
            protocol.__class__ = _SrpcServerProtocol
        super().__init__(protocol, *args, **kwargs)


class SrpcClientConnection(ClientConnection):
    """The client's ``websockets`` connection: frames over ``max_size`` close with 4000."""

    def __init__(self, protocol: ClientProtocol, *args: Any, **kwargs: Any) -> None:
        if type(protocol) is ClientProtocol:
            protocol.__class__ = _SrpcClientProtocol
        super().__init__(protocol, *args, **kwargs)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) if address is not None else ""


class WebsocketsTransport:
    """:class:`~.base.Transport` over a ``websockets`` connection (server or client side)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        # send_nowait replays the synchronous part of Connection.send; it needs these
        # websockets internals (present from 14.0) and falls back to send() without.
        self._can_send_directly = all(
            hasattr(connection, name) for name in ("send_in_progress", "paused", "send_data")
        )
        # True from a direct send until the end of that event-loop iteration: frames
        # sent meanwhile wait in the protocol and leave together in one write.
        self._corked = False
        self._corked_bytes = 0

    @property
    def remote_address(self) -> str:
        return _format_address(self.connection.remote_address)

    @property
    def close_code(self) -> int | None:
        received = self.connection.protocol.close_rcvd
        if received is not None:
            return received.code
        sent = self.connection.protocol.close_sent
        return sent.code if sent is not None else None

    async def recv(self) -> bytes | str | None:
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def send(self, data: bytes) -> None:
        await self.connection.send(data)

    def send_nowait(self, data: bytes) -> bool:
        # Connection.send suspends only while a fragmented message is going out, the
        # transport is paused (peer slow to read) or the connection is closing; in
        # any other state it is this, and the writer task and its wakeups are saved.
        connection = self.connection
        if (
            not self._can_send_directly
            or connection.send_in_progress is not None
            or connection.paused
            or connection.protocol.state is not State.OPEN
            or connection.transport.is_closing()
        ):
            return False
        connection.protocol.send_binary(data)
        if not self._corked:
            # The first frame of an iteration leaves at once (no added latency); the
            # ones after it, e.g. replies of requests that arrived together, share a
            # system call.
            connection.send_data()
            self._corked = True
            asyncio.get_running_loop().call_soon(self._uncork)
        elif self._corked_bytes + len(data) <= _CORK_LIMIT:
            self._corked_bytes += len(data)
        else:
            # Big frames go to the transport now, so that its flow control sees them.
            self._write_corked()
        return True

    def _uncork(self) -> None:
        self._corked = False
        self._write_corked()

    def _write_corked(self) -> None:
        self._corked_bytes = 0
        connection = self.connection
        chunks = connection.protocol.data_to_send()
        if not chunks:
            return
        if len(chunks) > 1 and all(chunks):
            connection.transport.write(b"".join(chunks))
            return
        # One frame, or an end-of-stream marker among them: as websockets writes them.
        for chunk in chunks:
            if chunk:
                connection.transport.write(chunk)
            else:
                _half_close(connection)

    async def close(self, code: int, reason: str) -> None:
        await self.connection.close(code, reason)

    def abort(self) -> None:
        self.connection.transport.abort()

    def buffered_amount(self) -> int:
        return self.connection.transport.get_write_buffer_size() + self._corked_bytes


def handshake_request(request: Request, remote_address: Any) -> HandshakeRequest:
    """Our library-neutral view of a ``websockets`` upgrade request."""
    url = urlsplit(request.path)
    headers: Headers = request.headers
    return HandshakeRequest(
        path=url.path,
        query=parse_query(url.query),
        headers={k.lower(): v for k, v in headers.raw_items()},
        remote_address=_format_address(remote_address),
    )


async def serve(
    acceptor: ConnectionAcceptor,
    host: str | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
) -> Server:
    """Start a ``websockets`` server that hands accepted connections to ``acceptor``."""
    decisions: weakref.WeakKeyDictionary[
        ServerConnection, tuple[HandshakeRequest, HandshakeAccepted]
    ]
    decisions = weakref.WeakKeyDictionary()
    install_accept_error_filter()

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        handshake = handshake_request(request, connection.remote_address)
        decision = await acceptor.authorize(handshake)
        if isinstance(decision, HandshakeRejected):
            logger.info(
                "refused upgrade from %s: %d %s",
                handshake.remote_address,
                decision.status,
                decision.reason,
            )
            return connection.respond(decision.status, decision.reason + "\n")
        decisions[connection] = (handshake, decision)
        return None

    async def handler(connection: ServerConnection) -> None:
        # No locals: this frame lives as long as the connection.
        await acceptor.serve(WebsocketsTransport(connection), *decisions.pop(connection))

    return await ws_serve(
        handler,
        host,
        port,
        ssl=ssl,
        process_request=process_request,
        compression=acceptor.compression,
        # Our own limit answers with 4000 (badArg); this one stops absurd frames before
        # they are buffered whole, and answers 4000 too.
        max_size=max(2 * acceptor.max_frame_size, 64 * 1024),
        create_connection=_SrpcServerConnection,
        open_timeout=acceptor.handshake_timeout,
        # SRPC has its own pings.
        ping_interval=None,
        close_timeout=acceptor.close_timeout,
    )
