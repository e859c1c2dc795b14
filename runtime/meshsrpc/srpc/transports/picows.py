"""SRPC on ``picows`` (a Cython WebSocket implementation): the fast standalone server and client.

The server reads the HTTP upgrade request itself, so that the (possibly asynchronous)
:meth:`~meshsrpc.SrpcServer._authorize_upgrade` decides it before anything is accepted:
a refusal is a plain HTTP response, as on the ``websockets`` transport. An accepted
connection is then handed to picows's protocol, which validates the upgrade headers,
answers 101 and parses frames.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSHandshakeError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]
from picows.url import WSInvalidURL

from ...errors import SrpcError
from ..auth import HandshakeAccepted, HandshakeRejected, HandshakeRequest, parse_query

if TYPE_CHECKING:
    from ..server import SrpcServer

__all__ = ["PicowsListener", "PicowsTransport", "connect", "serve"]

logger = logging.getLogger(__name__)
# picows logs every connection and disconnection at INFO: its own logger, to filter.
_ws_logger = logging.getLogger("meshsrpc.srpc.transports.picows.ws")

# Messages received but not yet taken by recv(): above the high mark the socket is not
# read until recv() has brought them down to the low mark (as websockets' max_queue).
_INBOX_HIGH = 32
_INBOX_LOW = 8
# Largest HTTP upgrade request head we read (as picows and websockets do).
_MAX_REQUEST_HEAD = 16 * 1024
# Seconds a new connection has to send its upgrade request (as websockets' open_timeout).
_DEFAULT_HANDSHAKE_TIMEOUT = 10.0
# Initial read buffer of a server connection; picows doubles it when a frame needs more.
# Small, since most connections are idle most of the time (picows's default: 16 KiB).
_READ_BUFFER = 4 * 1024
_NO_CODE = 1005  # a close frame without a status code (RFC 6455 §7.1.5)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) if address is not None else ""


def frame_limit(max_frame_size: int) -> int:
    """The WebSocket message size limit for an SRPC frame limit (as on websockets).

    Our own limit answers with 4000 (badArg); this one only stops absurd frames.
    """
    return max(2 * max_frame_size, 64 * 1024)


class PicowsTransport(WSListener):
    """:class:`~.base.Transport` over a ``picows`` connection (server or client side).

    picows calls :meth:`on_ws_frame` for every frame; messages wait in a short inbox
    for :meth:`recv`.
    """

    def __init__(self, *, max_message_size: int, close_timeout: float) -> None:
        super().__init__()
        self.ws: WSTransport | None = None
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self._inbox: deque[bytes | str] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._write_paused = False
        self._resume_waiter: asyncio.Future[None] | None = None
        self._disconnected = False
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # An unfinished fragmented message: its type and the parts so far.
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._fragments_size = 0
        self._remote_address = ""
        self.on_connected: Callable[[], None] | None = None
        """Called once the WebSocket is open (the server starts serving it)."""
        self.on_message: Callable[[bytes | str], bool] | None = None
        """Offered each message while :meth:`recv` waits on an empty inbox; True: taken."""

    # --- picows callbacks ------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        self._remote_address = _format_address(
            transport.underlying_transport.get_extra_info("peername")
        )
        if self.on_connected is not None:
            self.on_connected()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.BINARY and frame.fin and self._fragments is None:
            self._deliver(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.BINARY or msg_type is WSMsgType.TEXT:
            if self._fragments is not None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "expected a continuation frame")
                return
            self._fragments = []
            self._fragments_text = msg_type is WSMsgType.TEXT
            self._fragments_size = 0
            self._add_fragment(frame)
        elif msg_type is WSMsgType.CONTINUATION:
            if self._fragments is None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
                return
            self._add_fragment(frame)
        elif msg_type is WSMsgType.CLOSE:
            # Answer the peer's close (echoing its code) unless ours went first; either
            # way the closing handshake is complete and the connection can go.
            if not transport.is_close_frame_sent:
                code = frame.get_close_code()
                transport.send_close(code if code else WSCloseCode.OK)
            transport.disconnect()
        # PING is answered by picows (enable_auto_pong); PONG needs nothing.

    def _add_fragment(self, frame: WSFrame) -> None:
        fragments = self._fragments
        assert fragments is not None
        self._fragments_size += frame.payload_size
        if self._fragments_size > self._max_message_size:
            self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        fragments.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        self._fragments = None
        data = b"".join(fragments)
        if not self._fragments_text:
            self._deliver(data)
            return
        try:
            self._deliver(data.decode())
        except UnicodeDecodeError:
            self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8")

    def _deliver(self, data: bytes | str) -> None:
        waiter = self._waiter
        on_message = self.on_message
        # Straight to the session while its receive loop idles (no turn of the loop).
        if on_message is not None and waiter is not None and not waiter.done() and on_message(data):
            return
        self._inbox.append(data)
        if len(self._inbox) >= _INBOX_HIGH and not self._reading_paused and self.ws is not None:
            self._reading_paused = True
            self.ws.underlying_transport.pause_reading()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, code: WSCloseCode, reason: str) -> None:
        ws = self.ws
        if ws is None:
            return
        if not ws.is_close_frame_sent:
            ws.send_close(code, reason.encode())
        ws.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._disconnected = True
        for waiter in (self._waiter, self._resume_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if not self._gone.done():
            self._gone.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._resume_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- Transport -------------------------------------------------------------------

    @property
    def remote_address(self) -> str:
        return self._remote_address

    @property
    def close_code(self) -> int | None:
        ws = self.ws
        handshake = ws.close_handshake if ws is not None else None
        if handshake is None:
            return None
        info = handshake.recv if handshake.recv is not None else handshake.sent
        if info is None:
            return None
        code: Any = info.code  # an int enum in picows, a plain Enum in its stubs
        return int(code) or _NO_CODE

    async def recv(self) -> bytes | str | None:
        inbox = self._inbox
        while not inbox:
            if self._disconnected:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        data = inbox.popleft()
        if self._reading_paused and len(inbox) <= _INBOX_LOW:
            self._reading_paused = False
            if self.ws is not None and not self._disconnected:
                self.ws.underlying_transport.resume_reading()
        return data

    def _closed_for_sending(self) -> bool:
        ws = self.ws
        return self._disconnected or ws is None or ws.is_close_frame_sent

    async def send(self, data: bytes) -> None:
        while self._write_paused and not self._disconnected:
            waiter = self._resume_waiter
            if waiter is None or waiter.done():
                waiter = self._resume_waiter = asyncio.get_running_loop().create_future()
            await waiter
        if self._closed_for_sending():
            raise ConnectionError("WebSocket is closed")
        assert self.ws is not None
        self.ws.send(WSMsgType.BINARY, data)

    def send_nowait(self, data: bytes) -> bool:
        if self._write_paused or self._closed_for_sending():
            return False
        assert self.ws is not None
        self.ws.send(WSMsgType.BINARY, data)
        return True

    async def close(self, code: int, reason: str) -> None:
        ws = self.ws
        if ws is None or self._disconnected:
            return
        if not ws.is_close_frame_sent:
            ws.send_close(WSCloseCode(code), reason.encode())
        handshake = ws.close_handshake
        if handshake is not None and handshake.recv is not None:
            ws.disconnect()
        try:
            await asyncio.wait_for(asyncio.shield(self._gone), self._close_timeout)
        except TimeoutError:
            ws.disconnect(graceful=False)

    def abort(self) -> None:
        if self.ws is not None:
            self.ws.disconnect(graceful=False)

    def buffered_amount(self) -> int:
        if self.ws is None or self._disconnected:
            return 0
        return int(self.ws.underlying_transport.get_write_buffer_size())


# --- the server ---------------------------------------------------------------------------


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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not derive from asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)
        self._listener._upgrading.add(self)
        self._timer = asyncio.get_running_loop().call_later(
            self._listener.handshake_timeout, self._transport.abort
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._deciding is not None:
            # Read before the pause took effect: replayed to picows with the head.
            return
        end = self._buffer.find(b"\r\n\r\n")
        transport = self._transport
        assert transport is not None
        if end < 0:
            if len(self._buffer) > _MAX_REQUEST_HEAD:
                self._refuse(400, "Request head too large")
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
        assert self._transport is not None
        self._transport.write(_http_response(status, reason))
        self._transport.close()

    async def _decide(self, head: bytes) -> None:
        transport = self._transport
        assert transport is not None
        address = _format_address(transport.get_extra_info("peername"))
        try:
            request = parse_request_head(head, address)
        except (_BadRequest, UnicodeDecodeError) as exc:
            logger.info("refused upgrade from %s: 400 %s", address, exc)
            self._refuse(400, "Bad Request")
            return
        server = self._listener.server
        try:
            decision = await server._authorize_upgrade(request)
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
        server = listener.server
        connection = PicowsTransport(
            max_message_size=frame_limit(server.max_frame_size),
            close_timeout=server.close_timeout,
        )

        def on_connected() -> None:
            task = asyncio.get_running_loop().create_task(
                server._serve(connection, request, decision), name="srpc-picows-serve"
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
            frame_limit(server.max_frame_size),
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

    def __init__(self, server: SrpcServer[Any, Any], handshake_timeout: float) -> None:
        self.server = server
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
    server: SrpcServer[Any, Any],
    host: str | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
) -> PicowsListener:
    """Start a ``picows`` server that hands accepted connections to ``server``."""
    timeout = getattr(server, "handshake_timeout", None) or _DEFAULT_HANDSHAKE_TIMEOUT
    listener = PicowsListener(server, float(timeout))
    loop = asyncio.get_running_loop()
    listener._asyncio_server = await loop.create_server(
        lambda: _Upgrade(listener), host, port, ssl=ssl
    )
    return listener


# --- the client ---------------------------------------------------------------------------


async def connect(
    url: str,
    *,
    max_frame_size: int,
    connect_timeout: float,
    close_timeout: float = 5.0,
    ssl: ssl_module.SSLContext | None = None,
) -> PicowsTransport:
    """Open a client connection; SrpcError when refused (with the HTTP status) or unreachable."""
    limit = frame_limit(max_frame_size)
    # Errors name the URL without its query: that holds the signature.
    bare = url.split("?", 1)[0]

    def make() -> PicowsTransport:
        return PicowsTransport(max_message_size=limit, close_timeout=close_timeout)

    try:
        async with asyncio.timeout(connect_timeout):
            _, connection = await ws_connect(
                make,
                url,
                ssl_context=ssl,
                websocket_handshake_timeout=connect_timeout,
                logger_name=_ws_logger,
                enable_auto_pong=True,
                max_frame_size=limit,
                max_redirects=0,
            )
    except WSHandshakeError as exc:
        response = exc.response
        if response is None:
            raise SrpcError(f"could not connect to {bare}: {exc}") from exc
        body = (exc.raw_body or b"").decode(errors="replace").strip()
        status = int(response.status)
        raise SrpcError(f"server refused the connection: HTTP {status} {body}".strip()) from exc
    except (OSError, TimeoutError, ssl_module.SSLError) as exc:
        raise SrpcError(f"could not connect to {bare}: {exc}") from exc
    except (ValueError, WSInvalidURL):
        # An invalid URL; not chained: its text holds the query.
        raise SrpcError(f"could not connect: invalid URL {bare!r}") from None
    if not isinstance(connection, PicowsTransport):
        # picows returns no listener when the peer hung up during the handshake.
        raise SrpcError(f"could not connect to {bare}: connection closed during the handshake")
    return connection
