"""SrpcClient: connects to an SRPC server, calls it, answers its calls, and reconnects.

``connect()`` resolves on the server's first ping (after answering it). While
connected, the client pings every ``ping_interval`` seconds and closes with 4003 when
the server has been silent for ``pong_timeout``. When the connection drops, it
reconnects with exponential backoff unless it was told to disconnect, was refused
(4001 conflict) or was superseded by another connection with the same client id (4002).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeAlias, TypeVar

import betterproto2

from ..errors import SrpcConflictError, SrpcError, SrpcStreamClosedError
from ._callbacks import call_maybe_async
from .bytestream import ByteStreamReader, ByteStreamWriter
from .client_connect import checked_url, handshake_url, open_transport
from .frames import CallField, FrameSchema
from .protocol import CLOSE_CODES, UNHANDLED_MESSAGE_TYPE, CloseCause, SrpcProtocol
from .session import SrpcSession

__all__ = [
    "ClientConnectionHandler",
    "ClientDisconnectHandler",
    "ClientMessageHandler",
    "SrpcClient",
]

logger = logging.getLogger(__name__)

ClientMsgT = TypeVar("ClientMsgT", bound=betterproto2.Message)
ServerMsgT = TypeVar("ServerMsgT", bound=betterproto2.Message)

ClientMessageHandler: TypeAlias = Callable[[Any], Any]
"""handler(request) -> response (or an awaitable of it)."""
ClientConnectionHandler: TypeAlias = Callable[[], Any]
"""handler(), sync or async, after each (re)connect."""
ClientDisconnectHandler: TypeAlias = Callable[[CloseCause], Any]
"""handler(cause), sync or async, after each disconnect."""

DEFAULT_TIMEOUT = 30.0


class SrpcClient(Generic[ClientMsgT, ServerMsgT]):
    """An SRPC client for one app's ``ClientMessage`` / ``ServerMessage`` pair."""

    def __init__(
        self,
        url: str,
        client_message: type[ClientMsgT],
        server_message: type[ServerMsgT],
        client_id: str,
        *,
        client_meta: Mapping[str, object] | None = None,
        client_secret: str | None = None,
        enable_reconnect: bool = True,
        protocol_version: int = 2,
        app_version: str = "1.0.0",
        ping_interval: float = 55.0,
        pong_timeout: float = 75.0,
        connection_check_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        reconnect_delay: float = 0.3,
        max_reconnect_delay: float = 30.0,
        max_frame_size: int = 1024 * 1024,
        max_send_buffer: int = 8 * 1024 * 1024,
        ssl: ssl_module.SSLContext | None = None,
        fallback_urls: Sequence[str] = (),
        peer_max_frame_size: int | None = None,
        transport: str | None = None,
    ) -> None:
        self.url = checked_url(url)
        # "websockets", "picows" or "auto" (None: $MESHSRPC_TRANSPORT, else auto).
        self.transport = transport
        self.client_schema: FrameSchema[ClientMsgT] = FrameSchema(client_message)
        self.server_schema: FrameSchema[ServerMsgT] = FrameSchema(server_message)
        self.client_id = client_id
        self.client_meta = dict(client_meta or {})
        self.client_secret = client_secret
        self.enable_reconnect = enable_reconnect
        self.protocol_version = protocol_version
        self.app_version = app_version
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.connection_check_timeout = connection_check_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_frame_size = max_frame_size
        self.max_send_buffer = max_send_buffer
        self.peer_max_frame_size = peer_max_frame_size
        self.ssl = ssl
        self._handlers: dict[str, ClientMessageHandler] = {}
        self._connection_handlers: list[ClientConnectionHandler] = []
        self._disconnect_handlers: list[ClientDisconnectHandler] = []
        self._session: SrpcSession | None = None
        self._connected = False
        # Every server URL, tried in turn on reconnects (a draining node refuses new
        # connections: the next URL is another node).
        self._urls = [self.url, *(checked_url(u) for u in fallback_urls)]
        self._up = asyncio.Event()  # set while connected: calls made meanwhile wait
        self._wanted = False
        self._supersede = False
        self._supervisor: asyncio.Task[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._last_pong = 0.0
        self._first_ping: asyncio.Future[None] | None = None
        self._run_task: asyncio.Task[CloseCause] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()

    # --- registration ----------------------------------------------------------------

    def register_message_handler(self, prefix: str, handler: ClientMessageHandler) -> None:
        """Handle the server's ``<prefix>Request``: handler(request) -> response."""
        call = self.server_schema.lookup(prefix, request=True)
        if call is None:
            known = ", ".join(sorted(self.server_schema.prefixes(request=True)))
            raise ValueError(f"{prefix!r} is not a server request (known: {known})")
        self._handlers[call.prefix] = handler

    def register_connection_handler(self, handler: ClientConnectionHandler) -> None:
        """Run handler() after every successful (re)connect."""
        self._connection_handlers.append(handler)

    def register_disconnect_handler(self, handler: ClientDisconnectHandler) -> None:
        """Run handler(cause) whenever the connection ends."""
        self._disconnect_handlers.append(handler)

    # --- state -----------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True between the server's first ping and the end of the connection."""
        return self._connected and self._session is not None and self._session.is_open

    # --- connecting ------------------------------------------------------------------

    async def connect(self, *, supersede: bool = False) -> None:
        """Connect and wait for the server's first ping.

        Raises SrpcConflictError when the server refuses the client id (4001, protocol
        v2 without ``supersede``), SrpcError for any other failure (network error,
        HTTP refusal such as 403, or a close before the first ping).
        """
        if self._supervisor is not None and not self._supervisor.done():
            raise RuntimeError("already connected")
        self._wanted = True
        self._stop.clear()
        self._supersede = supersede
        try:
            await self._open()
        except BaseException:
            self._wanted = False
            raise
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"srpc-client-{self.client_id}"
        )

    async def _open(self) -> None:
        """One connection attempt; returns once the server's first ping arrived."""
        checked_url(self.url)  # the attribute may have changed since __init__
        url = handshake_url(
            self.url,
            self.client_id,
            app_version=self.app_version,
            protocol_version=self.protocol_version,
            secret=self.client_secret,
            meta=self.client_meta,
            supersede=self._supersede,
        )
        transport = await open_transport(
            url,
            self.transport,
            server_url=self.url,
            max_frame_size=self.max_frame_size,
            connect_timeout=self.connect_timeout,
            ssl=self.ssl,
        )
        protocol = SrpcProtocol(
            self.server_schema,
            self.client_schema,
            max_frame_size=self.max_frame_size,
            activated=True,
        )
        first_ping: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first_ping = first_ping
        session = SrpcSession(
            protocol,
            transport,
            dispatch=self._dispatch,
            on_ping=self._on_server_ping,
            first_byte_stream_id=1,
            max_send_buffer=self.max_send_buffer,
            close_timeout=5.0,
            label=f"srpc-client[{self.client_id!r}]",
            peer_max_frame_size=self.peer_max_frame_size,
        )
        self._session = session
        self._connected = False
        run = asyncio.create_task(session.run(), name=f"srpc-client-run-{self.client_id}")
        self._run_task = run
        waiters: set[asyncio.Future[Any]] = {first_ping, run}
        done, _ = await asyncio.wait(
            waiters, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if first_ping not in done:
            if run not in done:
                await session.close("timeout", "No ping from server")
            cause = await run
            if session.transport.close_code == CLOSE_CODES["conflict"]:
                raise SrpcConflictError(
                    f"client id {self.client_id!r} is already connected; "
                    "connect(supersede=True) takes over that connection (the server closes "
                    "it with 4002)"
                )
            code = session.transport.close_code
            raise SrpcError(f"connection closed before it was ready ({cause}, code {code})")
        self._connected = True
        self._up.set()
        self._last_pong = time.monotonic()
        self._ping_task = asyncio.create_task(self._ping_loop(), name="srpc-client-ping")
        for handler in list(self._connection_handlers):
            self._spawn(self._run_handler(handler))

    def _on_server_ping(self) -> None:
        self._last_pong = time.monotonic()
        first = self._first_ping
        if first is not None and not first.done():
            # Answer the server's first ping: that is what starts activation there.
            if self._session is not None:
                self._session.send(self._session.protocol.ping())
            first.set_result(None)

    async def _ping_loop(self) -> None:
        next_ping = time.monotonic() + self.ping_interval
        while True:
            session = self._session
            if session is None or not session.is_open:
                return
            now = time.monotonic()
            if now - self._last_pong > self.pong_timeout:
                logger.info("%s: no pong for %.1f s; closing", session.label, now - self._last_pong)
                await session.close("timeout", "Pong timeout")
                return
            if now >= next_ping:
                session.send(session.protocol.ping())
                next_ping = now + self.ping_interval
            deadline = self._last_pong + self.pong_timeout
            await asyncio.sleep(max(0.005, min(next_ping, deadline) - now + 0.001))

    def trigger_connection_check(self) -> None:
        """Ping now; close with 4003 unless the server answers within ``connection_check_timeout``.

        Call it when the network may have changed (e.g. the device woke up) to find a
        dead connection in seconds instead of waiting for the pong timeout.
        """
        session = self._session
        if session is None or not session.is_open:
            return
        session.send(session.protocol.ping())
        sent = time.monotonic()

        async def check() -> None:
            await asyncio.sleep(self.connection_check_timeout)
            if self._session is session and session.is_open and self._last_pong < sent:
                await session.close("timeout", "Connection check failed")

        self._spawn(check())

    async def _supervise(self) -> None:
        """Wait for the connection to end; reconnect with backoff when that is wanted."""
        attempt = 0
        while True:
            run = self._run_task
            assert run is not None
            cause = await asyncio.shield(run)
            self._connected = False
            self._up.clear()
            if self._ping_task is not None:
                self._ping_task.cancel()
            await self._notify_disconnect(cause)
            if not self._wanted or not self.enable_reconnect or cause in ("conflict", "supersede"):
                self._wanted = False
                return
            # A draining server asked us to go elsewhere: no delay for the first try.
            at_once = cause == "restart"
            if at_once:
                self._next_url()
            # After a failed attempt the other URLs are tried at once (a dead node
            # refuses fast; the others are likely up); only a whole round that failed
            # backs off.
            untried = len(self._urls) - 1
            while self._wanted:
                if not at_once:
                    delay = min(self.max_reconnect_delay, self.reconnect_delay * 2**attempt)
                    attempt += 1
                    try:
                        await asyncio.wait_for(
                            self._stop.wait(), delay * (0.5 + random.random() / 2)
                        )
                    except TimeoutError:
                        pass
                    if not self._wanted:
                        return
                at_once = False
                try:
                    await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.info("reconnect of %r failed: %s", self.client_id, exc)
                    self._next_url()
                    if untried > 0:
                        untried -= 1
                        at_once = True
                    else:
                        untried = len(self._urls) - 1
                    continue
                attempt = 0
                if not self._wanted and self._session is not None:
                    await self._session.close("disconnect", "Client disconnect")
                break

    def _next_url(self) -> None:
        """Move on to the next server URL (after the one in use), if there are several."""
        if len(self._urls) < 2:
            return
        try:
            index = self._urls.index(self.url)
        except ValueError:  # set by hand meanwhile: keep it first
            self._urls.insert(0, self.url)
            index = 0
        self.url = self._urls[(index + 1) % len(self._urls)]

    async def _notify_disconnect(self, cause: CloseCause) -> None:
        for handler in list(self._disconnect_handlers):
            try:
                await call_maybe_async(handler, cause)
            except Exception:
                logger.exception("client disconnect handler failed")

    async def _run_handler(self, handler: ClientConnectionHandler) -> None:
        try:
            await call_maybe_async(handler)
        except Exception:
            logger.exception("client connection handler failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def disconnect(self) -> None:
        """Close the connection (1000) and stop reconnecting."""
        self._wanted = False
        self._stop.set()
        session = self._session
        if session is not None:
            await session.close("disconnect", "Client disconnect")
            await session.wait_closed()
        supervisor = self._supervisor
        if supervisor is not None:
            try:
                await asyncio.wait_for(asyncio.shield(supervisor), self.connect_timeout + 5)
            except TimeoutError:
                supervisor.cancel()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("client supervisor failed")
        if self._ping_task is not None:
            self._ping_task.cancel()
        for task in list(self._background):
            task.cancel()

    async def __aenter__(self) -> Self:
        """``async with client:`` connects, and disconnects on exit."""
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    # --- calls -----------------------------------------------------------------------

    async def _dispatch(
        self, call: CallField, request: betterproto2.Message
    ) -> betterproto2.Message:
        handler = self._handlers.get(call.prefix)
        if handler is None:
            raise SrpcError(f"{UNHANDLED_MESSAGE_TYPE}: {call.prefix}")
        response = await call_maybe_async(handler, request)
        expected = self.client_schema.lookup(call.prefix, request=False)
        if expected is None or not isinstance(response, expected.message_cls):
            raise TypeError(f"handler for {call.prefix} returned {type(response).__name__}")
        return response

    if TYPE_CHECKING:
        # Generated subclasses add Literal-keyed overloads; see GENERATOR.md typing notes.
        def invoke(self, *args: Any, **kwargs: Any) -> Any: ...

    else:

        async def invoke(self, prefix, request, timeout=DEFAULT_TIMEOUT):
            """Call the server: ``await client.invoke("uEcho", UEchoRequest(...))``."""
            return await self._invoke(prefix, request, timeout)

    async def _invoke(
        self,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Any:
        """Typed implementation of :meth:`invoke` (None = the 30 s default timeout)."""
        seconds = DEFAULT_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + seconds
        while True:
            while not self.is_connected and self._reconnecting:
                # Dropped, or moved by a draining server: the call waits for the next
                # connection (within its timeout) instead of failing. (The supervisor
                # may not have seen the close yet: _up is what it sets on reconnect.)
                self._up.clear()
                try:
                    await asyncio.wait_for(self._up.wait(), deadline - time.monotonic())
                except TimeoutError:
                    raise SrpcError(f"not connected (reconnecting for {seconds:.1f} s)") from None
            session = self._session
            if session is None or not self.is_connected:
                raise SrpcError("not connected")
            try:
                return await session.invoke(
                    prefix, request, max(0.001, deadline - time.monotonic())
                )
            except SrpcStreamClosedError as exc:
                # A draining server (1012) ran no request it got after it began
                # draining, so a call it did not answer is safe to send again.
                if exc.cause != "restart" or not self._reconnecting:
                    raise
                if time.monotonic() >= deadline:
                    raise

    @property
    def _reconnecting(self) -> bool:
        supervisor = self._supervisor
        return self._wanted and supervisor is not None and not supervisor.done()

    # --- byte streams ----------------------------------------------------------------

    def create_byte_stream(self) -> ByteStreamWriter:
        """Open a byte stream to the server (ids 1, 3, 5, ...); pass its id in a call."""
        if self._session is None or not self.is_connected:
            raise SrpcError("not connected")
        return self._session.byte_streams.create_writer()

    def open_byte_stream(self, stream_id: int) -> ByteStreamReader:
        """The reader for the byte stream ``stream_id`` the server writes."""
        if self._session is None:
            raise SrpcError("not connected")
        return self._session.byte_streams.open_reader(stream_id)
