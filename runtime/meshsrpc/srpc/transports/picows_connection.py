"""SRPC over one ``picows`` connection: the :class:`~.base.Transport` adapter and ``connect``.

The listener (:mod:`meshsrpc.srpc.transports.picows`) hands each accepted connection
to a :class:`PicowsTransport`; :func:`connect` opens one as a client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSHandshakeError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)
from picows.url import WSInvalidURL

from ...errors import SrpcError

__all__ = ["PicowsTransport", "connect", "format_address", "frame_limit"]

# picows logs every connection and disconnection at INFO: its own logger, to filter.
_ws_logger = logging.getLogger("meshsrpc.srpc.transports.picows.ws")

# Messages received but not yet taken by recv(): above the high mark the socket is not
# read until recv() has brought them down to the low mark (as websockets' max_queue).
_INBOX_HIGH = 32
_INBOX_LOW = 8
_NO_CODE = 1005  # a close frame without a status code (RFC 6455 §7.1.5)
# Frames held back to share one system call with the first frame of a loop iteration:
# up to this many bytes, then they go at once (the transport's flow control sees them).
_CORK_LIMIT = 64 * 1024


def format_address(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a socket address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) if address is not None else ""


class _IterationEnd:
    """Numbers the loop's iterations (for the transports that send), and uncorks at the end.

    A transport's first frame of an iteration leaves at once; it only notes the
    iteration's number. A second frame in the same iteration is corked and the transport
    registered here. One ``call_soon`` per iteration for all transports: connections
    that send one frame an iteration (the usual case) pay a compare, not a callback.
    """

    __slots__ = ("_corked", "_loop", "scheduled", "turn")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._corked: list[PicowsTransport] = []
        self.turn = 0
        self.scheduled = False

    def schedule(self) -> None:
        """Move ``turn`` on (and uncork) once the current iteration is over."""
        self.scheduled = True
        self._loop.call_soon(self._run)

    def add(self, transport: PicowsTransport) -> None:
        """Uncork ``transport`` at the end of this iteration."""
        self._corked.append(transport)

    def _run(self) -> None:
        self.scheduled = False
        self.turn += 1
        corked, self._corked = self._corked, []
        for transport in corked:
            transport._uncork()


_iteration_ends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _IterationEnd] = (
    weakref.WeakKeyDictionary()
)


def _iteration_end(loop: asyncio.AbstractEventLoop) -> _IterationEnd:
    end = _iteration_ends.get(loop)
    if end is None:
        end = _iteration_ends[loop] = _IterationEnd(loop)
    return end


def binary_frame_header(length: int) -> bytes:
    """The header of an unmasked, final binary frame of ``length`` bytes (RFC 6455 §5.2)."""
    if length < 126:
        return bytes((0x82, length))
    if length < 1 << 16:
        return b"\x82\x7e" + length.to_bytes(2, "big")
    return b"\x82\x7f" + length.to_bytes(8, "big")


def frame_limit(max_frame_size: int) -> int:
    """The WebSocket message size limit for an SRPC frame limit (as on websockets).

    Our own limit answers with 4000 (badArg); this one only stops absurd frames.
    """
    return max(2 * max_frame_size, 64 * 1024)


class PicowsTransport(WSListener):
    """:class:`~.base.Transport` over a ``picows`` connection (server or client side).

    picows calls :meth:`on_ws_frame` for every frame; messages wait in a short inbox
    for :meth:`recv`. On the server side, the frames sent in one iteration of the event
    loop after its first share one system call (picows makes one per frame): the
    requests a node forwards to a client arrive in bursts.
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
        loop = asyncio.get_running_loop()
        self._gone: asyncio.Future[None] = loop.create_future()
        self._iteration_end = _iteration_end(loop)
        # Frames (headers and payloads) waiting for the end of this loop iteration, once
        # a second frame came in it (None until then: the first one goes at once).
        self._corked: list[bytes] | None = None
        self._corked_bytes = 0
        self._turn = -1  # the iteration of the last frame sent
        self._client_side = True  # until on_ws_connected says otherwise: no corking
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
        # Client frames are masked: picows masks them, so they are not corked here.
        self._client_side = transport.is_client_side
        self._remote_address = format_address(
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
            self._write_corked()
            ws.send_close(code, reason.encode())
        ws.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._disconnected = True
        self._corked = None
        self._corked_bytes = 0
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
        self._write_corked()  # frames keep their order
        self.ws.send(WSMsgType.BINARY, data)

    def send_nowait(self, data: bytes) -> bool:
        if self._write_paused or self._closed_for_sending():
            return False
        ws = self.ws
        assert ws is not None
        if self._client_side:
            ws.send(WSMsgType.BINARY, data)
            return True
        end = self._iteration_end
        if self._turn != end.turn:
            # The first frame of an iteration leaves at once (no added latency).
            self._turn = end.turn
            if not end.scheduled:
                end.schedule()
            ws.send(WSMsgType.BINARY, data)
            return True
        corked = self._corked
        if corked is None:
            corked = self._corked = []
            end.add(self)
        if self._corked_bytes + len(data) <= _CORK_LIMIT:
            corked += (binary_frame_header(len(data)), data)
            self._corked_bytes += len(data)
        else:
            self._write_corked()
            ws.send(WSMsgType.BINARY, data)
        return True

    def _uncork(self) -> None:
        self._write_corked()
        self._corked = None

    def _write_corked(self) -> None:
        corked = self._corked
        if not corked:
            return
        self._corked = []
        self._corked_bytes = 0
        ws = self.ws
        if ws is not None and not self._closed_for_sending():
            ws.underlying_transport.write(b"".join(corked))

    async def close(self, code: int, reason: str) -> None:
        ws = self.ws
        if ws is None or self._disconnected:
            return
        if not ws.is_close_frame_sent:
            self._write_corked()
            ws.send_close(WSCloseCode(code), reason.encode())
        handshake = ws.close_handshake
        if handshake is not None and handshake.recv is not None:
            ws.disconnect()
        try:
            await asyncio.wait_for(asyncio.shield(self._gone), self._close_timeout)
        except TimeoutError:
            ws.disconnect(graceful=False)

    def abort(self) -> None:
        self._corked = None
        self._corked_bytes = 0
        if self.ws is not None:
            self.ws.disconnect(graceful=False)

    def buffered_amount(self) -> int:
        if self.ws is None or self._disconnected:
            return 0
        return int(self.ws.underlying_transport.get_write_buffer_size()) + self._corked_bytes


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
