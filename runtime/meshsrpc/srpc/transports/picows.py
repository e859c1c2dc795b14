"""SRPC on ``picows`` (a Cython WebSocket implementation): the fast standalone listener.

The listener reads the HTTP upgrade request itself, so that the (possibly asynchronous)
:meth:`~.base.ConnectionAcceptor.authorize` decides it before anything is accepted:
a refusal is a plain HTTP response, as on the ``websockets`` transport. An accepted
connection is then handed to picows's protocol, which validates the upgrade headers,
answers 101 and parses frames (:mod:`~meshsrpc.srpc.transports.picows_connection`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

from picows import WSAutoPingStrategy
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from ..auth import HandshakeAccepted, HandshakeRejected, HandshakeRequest, parse_query
from .accept_errors import install_accept_error_filter
from .base import ConnectionAcceptor
from .picows_connection import PicowsTransport, connect, format_address, frame_limit

__all__ = ["PicowsListener", "PicowsTransport", "connect", "serve"]

logger = logging.getLogger(__name__)
# picows logs every connection and disconnection at INFO: its own logger, to filter.
_ws_logger = logging.getLogger("meshsrpc.srpc.transports.picows.ws")

# An HTTP upgrade request head (without its blank line) this long or longer is refused:
# picows's own limit, which it applies after we hand the connection over.
_MAX_REQUEST_HEAD = 16 * 1024
# Seconds a new connection has to send its upgrade request (as websockets' open_timeout).
_DEFAULT_HANDSHAKE_TIMEOUT = 10.0
# Initial read buffer of a server connection; picows doubles it when a frame needs more.
# Small, since most connections are idle most of the time (picows's default: 16 KiB).
_READ_BUFFER = 4 * 1024


class _BadRequest(Exception):
    pass


def parse_request_head(head: bytes, remote_address: str) -> HandshakeRequest:
    """Our library-neutral view of an HTTP/1.1 upgrade request head (without ``\\r\\n\\r\\n``)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        raise _BadRequest("not an HTTP/1.1 GET request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _BadRequest("invalid header line")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    url = urlsplit(parts[1].decode("latin-1"))
    return HandshakeRequest(
        path=url.path,
        query=parse_query(url.query),
        headers=headers,
        remote_address=remote_address,
    )


def _http_response(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Upgrade(asyncio.Protocol):
    """A new connection until its upgrade request is decided; then picows takes it over."""

    def __init__(self, listener: PicowsListener) -> None:
        self._listener = listener
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deciding: asyncio.Task[None] | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not derive from asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)
        self._listener._upgrading.add(self)
        self._timer = asyncio.get_running_loop().call_later(
            self._listener.handshake_timeout, self._transport.abort
        )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request: read only to be dropped
        self._buffer += data
        if self._deciding is not None:
            # Read before the pause took effect: replayed to picows with the head.
            return
        end = self._buffer.find(b"\r\n\r\n")
        transport = self._transport
        assert transport is not None
        # Whether it came in pieces or at once (picows would hang up on it after the
        # upgrade is decided, without an answer); unfinished, it ends 3 bytes back at most.
        if end >= _MAX_REQUEST_HEAD or (end < 0 and len(self._buffer) >= _MAX_REQUEST_HEAD + 3):
            self._refuse(400, "Request head too large")
            return
        if end < 0:
            return
        # Nothing more is read until the request is decided and picows reads the frames.
        transport.pause_reading()
        self._deciding = asyncio.get_running_loop().create_task(
            self._decide(bytes(self._buffer[:end])), name="srpc-picows-upgrade"
        )
        self._listener._pending.add(self._deciding)
        self._deciding.add_done_callback(self._listener._pending.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener._upgrading.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._deciding is not None:
            self._deciding.cancel()

    def abort(self) -> None:
        """Drop the connection before its upgrade (the listener is closing)."""
        if self._transport is not None:
            self._transport.abort()

    def _refuse(self, status: int, reason: str) -> None:
        transport = self._transport
        assert transport is not None
        transport.write(_http_response(status, reason))
        self._buffer = bytearray()
        if not transport.can_write_eof():  # TLS
            transport.close()
            return
        # Closing with bytes of the request still unread (a head over the limit, still
        # arriving) resets the connection, and the reset can overtake the answer: end
        # our side, drop what still comes and close when the peer does (as websockets
        # does), at the latest when the handshake timeout aborts the connection.
        self._refused = True
        transport.write_eof()
        transport.resume_reading()

    async def _decide(self, head: bytes) -> None:
        transport = self._transport
        assert transport is not None
        address = format_address(transport.get_extra_info("peername"))
        try:
            request = parse_request_head(head, address)
        except (_BadRequest, UnicodeDecodeError) as exc:
            logger.info("refused upgrade from %s: 400 %s", address, exc)
            self._refuse(400, "Bad Request")
            return
        try:
            decision = await self._listener.acceptor.authorize(request)
        except asyncio.CancelledError:
            # The listener is closing: the connection goes with the decision.
            transport.abort()
            raise
        if transport.is_closing():
            return
        if isinstance(decision, HandshakeRejected):
            logger.info("refused upgrade from %s: %d %s", address, decision.status, decision.reason)
            self._refuse(decision.status, decision.reason)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._hand_over(transport, request, decision)

    def _hand_over(
        self, transport: asyncio.Transport, request: HandshakeRequest, decision: HandshakeAccepted
    ) -> None:
        listener = self._listener
        listener._upgrading.discard(self)
        acceptor = listener.acceptor
        connection = PicowsTransport(
            max_message_size=frame_limit(acceptor.max_frame_size),
            close_timeout=acceptor.close_timeout,
        )

        def on_connected() -> None:
            task = asyncio.get_running_loop().create_task(
                acceptor.serve(connection, request, decision), name="srpc-picows-serve"
            )
            listener._serving.add(task)
            task.add_done_callback(listener._serving.discard)

        connection.on_connected = on_connected
        protocol = WSProtocol(
            None,  # host and port: client side only
            None,  # path: client side only
            False,  # server side
            lambda _request: connection,
            _ws_logger,
            True,  # disconnect when a callback raises
            None,  # handshake timeout: the request is already here
            False,  # picows's own pings: SRPC has its own
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            frame_limit(acceptor.max_frame_size),
            None,  # extra headers: client side only
            _READ_BUFFER,
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        # Replay what was read so far (the request head and anything after it) into it.
        data = memoryview(self._buffer)
        while data:
            buffer = protocol.get_buffer(len(data))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            protocol.buffer_updated(size)
            data = data[size:]
        self._buffer = bytearray()
        transport.resume_reading()


class PicowsListener:
    """The listening side of :func:`serve`: what ``SrpcServer.listen`` keeps."""

    def __init__(self, acceptor: ConnectionAcceptor, handshake_timeout: float) -> None:
        self.acceptor = acceptor
        self.handshake_timeout = handshake_timeout
        self._asyncio_server: asyncio.Server | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._serving: set[asyncio.Task[None]] = set()
        # Connections whose upgrade request is not decided yet (picows has the others).
        self._upgrading: set[_Upgrade] = set()

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets."""
        return tuple(self._asyncio_server.sockets) if self._asyncio_server is not None else ()

    def close(self, close_connections: bool = False) -> None:
        """Stop accepting; established connections are the server's to close."""
        if self._asyncio_server is not None:
            self._asyncio_server.close()
        for task in list(self._pending):
            task.cancel()
        # Not left to their handshake timeout: asyncio.Server.wait_closed (3.12+)
        # waits for every connection it accepted.
        for upgrade in list(self._upgrading):
            upgrade.abort()

    async def wait_closed(self) -> None:
        """Wait until the listening sockets are closed and no upgrade is being decided."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._asyncio_server is not None:
            await self._asyncio_server.wait_closed()


async def serve(
    acceptor: ConnectionAcceptor,
    host: str | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
) -> PicowsListener:
    """Start a ``picows`` server that hands accepted connections to ``acceptor``."""
    timeout = acceptor.handshake_timeout or _DEFAULT_HANDSHAKE_TIMEOUT
    listener = PicowsListener(acceptor, float(timeout))
    install_accept_error_filter()
    loop = asyncio.get_running_loop()
    listener._asyncio_server = await loop.create_server(
        lambda: _Upgrade(listener), host, port, ssl=ssl
    )
    return listener
