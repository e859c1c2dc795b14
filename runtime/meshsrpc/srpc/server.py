"""SrpcServer: accepts SRPC clients over any transport and calls them back.

Lifecycle of one stream (every step is a hook a subclass such as ``MeshSrpcServer``
can extend):

1. upgrade request → :meth:`SrpcServer._authorize_upgrade` (400 / 403 / 500 or accept);
2. accepted → same-client-id check (v1 kicks the old stream with 4002, v2 refuses the
   newcomer with 4001 unless ``_supersede=1``) → :meth:`_on_stream_established`;
3. the server sends ``{pingPong}``; on the client's first pong the connection handlers
   run (they may call the client), then :meth:`_on_stream_activating` gates activation,
   the stream becomes active, :meth:`_on_stream_activated` is called, and then the
   requests queued so far run in order;
4. on close → :meth:`_on_stream_closed` (every accepted stream) and the disconnect
   handlers (streams that got past step 2).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeAlias, TypeVar

import betterproto2

from ..errors import SrpcConflictError, SrpcError
from ._callbacks import call_maybe_async
from .auth import (
    NOT_CONFIGURED,
    Authorizer,
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeRequest,
    KeyFetcher,
    MemoryReplayGuard,
    ReplayGuard,
    authenticate,
)
from .bytestream import PENDING_MAX_CONNECTION_BYTES, PENDING_MAX_STREAMS, ByteStreamLimits
from .clientmeta import ClientMetaSchema
from .frames import CallField, FrameSchema
from .ids import uuid7
from .liveness import InactivityMonitor
from .protocol import CLOSE_CODES, UNHANDLED_MESSAGE_TYPE, CloseCause, SrpcProtocol
from .session import SrpcSession
from .stream import SrpcStream, StreamMeta
from .transports.base import Transport
from .transports.choice import choose_transport

if TYPE_CHECKING:
    import ssl as ssl_module

    from .transports.asgi import AsgiApp

__all__ = [
    "ConnectionHandler",
    "DisconnectHandler",
    "ServerMessageHandler",
    "SrpcServer",
]

logger = logging.getLogger(__name__)

ClientMsgT = TypeVar("ClientMsgT", bound=betterproto2.Message)
ServerMsgT = TypeVar("ServerMsgT", bound=betterproto2.Message)

ServerMessageHandler: TypeAlias = Callable[[SrpcStream, Any], Any]
"""handler(stream, request) -> response (or an awaitable of it)."""
ConnectionHandler: TypeAlias = Callable[[SrpcStream], Any]
"""handler(stream), sync or async; raising disconnects the stream."""
DisconnectHandler: TypeAlias = Callable[[SrpcStream, CloseCause], Any]
"""handler(stream, cause), sync or async; errors are logged."""

DEFAULT_TIMEOUT = 30.0

AuthMode: TypeAlias = Literal["authorizer", "key-fetcher", "secret", "unsigned", "none"]
_AUTH_MODE_TEXT = {
    "authorizer": "a custom authorizer decides every connection",
    "key-fetcher": "HMAC signatures checked with per-client secrets (key fetcher)",
    "secret": "HMAC signatures checked with the shared secret",
}
INTERNAL_ERROR_CODE = 1011


class SrpcServer(Generic[ClientMsgT, ServerMsgT]):
    """An SRPC server for one app's ``ClientMessage`` / ``ServerMessage`` pair.

    Serve it standalone with :meth:`listen` (on ``picows`` or ``websockets``) or mount :attr:`asgi`
    in Starlette/FastAPI. Durations are seconds.
    """

    client_meta_schema: ClientMetaSchema | None = None
    """Converts the client's ``m--`` metadata to typed values (meshgen's classes set it)."""

    def __init__(
        self,
        client_message: type[ClientMsgT],
        server_message: type[ServerMsgT],
        *,
        path: str = "/srpc",
        auth_secret: str | None = None,
        clock_drift: float = 30.0,
        max_frame_size: int = 1024 * 1024,
        max_in_flight: int = 256,
        inactivity_timeout: float = 75.0,
        max_send_buffer: int = 8 * 1024 * 1024,
        close_timeout: float = 5.0,
        compression: str | None = None,
        replay_protection: bool = True,
        allow_unsigned: bool = False,
        expose_errors: bool = False,
        max_connections: int | None = None,
        handshake_timeout: float = 10.0,
        max_early_data: int = PENDING_MAX_CONNECTION_BYTES,
        max_early_streams: int = PENDING_MAX_STREAMS,
        peer_max_frame_size: int | None = None,
    ) -> None:
        self.client_schema: FrameSchema[ClientMsgT] = FrameSchema(client_message)
        self.server_schema: FrameSchema[ServerMsgT] = FrameSchema(server_message)
        self.path = path
        # An empty secret is no secret: a signature made with the empty key proves nothing.
        self.auth_secret = (
            auth_secret if auth_secret is not None else os.environ.get("SRPC_AUTH_SECRET")
        ) or None
        #: Accept unsigned connections when no secret, key fetcher or authorizer is set
        #: (development only). Off: such a server refuses every connection with 500.
        self.allow_unsigned = allow_unsigned
        #: Send a handler's unexpected exception text to the client ("ValueError: …");
        #: off (default), the client gets "Internal server error (error id …)" and the
        #: log the details. SrpcError messages always reach the client.
        self.expose_errors = expose_errors
        self._unconfigured_logged = False
        self.clock_drift = clock_drift
        self.max_frame_size = max_frame_size
        self.max_in_flight = max_in_flight
        self.max_send_buffer = max_send_buffer
        self.close_timeout = close_timeout
        self.compression = compression
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.peer_max_frame_size = peer_max_frame_size
        self.byte_stream_limits = ByteStreamLimits(
            max_bytes=max_early_data, max_streams=max_early_streams
        )
        self._handlers: dict[str, ServerMessageHandler] = {}
        self._response_classes: dict[str, type[betterproto2.Message]] = {}
        self._connection_handlers: list[ConnectionHandler] = []
        self._disconnect_handlers: list[DisconnectHandler] = []
        self._authorizer: Authorizer | None = None
        self._key_fetcher: KeyFetcher | None = None
        # A signed handshake URL is accepted once (per process here; MeshSrpcServer
        # shares the guard across nodes through Redis). Off: replay_protection=False.
        self._replay_guard: ReplayGuard | None = MemoryReplayGuard() if replay_protection else None
        self._streams: dict[str, SrpcStream] = {}
        self._streams_by_client: dict[str, SrpcStream] = {}
        self._serving: set[asyncio.Task[Any]] = set()
        self._inactivity = InactivityMonitor(inactivity_timeout, lambda: self._streams.values())
        self._listener: Any = None
        self._asgi: AsgiApp | None = None
        self._closing = False
        self._draining = False

    @property
    def inactivity_timeout(self) -> float:
        """Seconds a stream may stay silent before it is closed with 4003."""
        return self._inactivity.timeout

    @inactivity_timeout.setter
    def inactivity_timeout(self, value: float) -> None:
        self._inactivity.timeout = value

    # --- registration ----------------------------------------------------------------

    def register_message_handler(self, prefix: str, handler: ServerMessageHandler) -> None:
        """Handle the client's ``<prefix>Request``: handler(stream, request) -> response."""
        call = self.client_schema.lookup(prefix, request=True)
        if call is None:
            known = ", ".join(sorted(self.client_schema.prefixes(request=True)))
            raise ValueError(f"{prefix!r} is not a client request (known: {known})")
        self._handlers[call.prefix] = handler

    def register_connection_handler(self, handler: ConnectionHandler) -> None:
        """Run handler(stream) after the client's first pong, before activation."""
        self._connection_handlers.append(handler)

    def register_disconnect_handler(self, handler: DisconnectHandler) -> None:
        """Run handler(stream, cause) when a stream closes."""
        self._disconnect_handlers.append(handler)

    def set_client_authorizer(self, authorizer: Authorizer | None) -> None:
        """Replace the signature check with fn(query, request) -> bool | dict."""
        self._authorizer = authorizer

    def set_client_key_fetcher(self, fetcher: KeyFetcher | None) -> None:
        """Verify signatures with a per-client secret: fn(client_id) -> secret | None."""
        self._key_fetcher = fetcher

    def set_replay_guard(self, guard: ReplayGuard | None) -> None:
        """Store accepted signatures in ``guard`` (None: accept a signed URL repeatedly)."""
        self._replay_guard = guard

    @property
    def auth_mode(self) -> AuthMode:
        """How upgrades are authenticated now; ``"none"`` refuses every connection (500)."""
        if self._authorizer is not None:
            return "authorizer"
        if self._key_fetcher is not None:
            return "key-fetcher"
        if self.auth_secret is not None:
            return "secret"
        return "unsigned" if self.allow_unsigned else "none"

    def _log_auth_mode(self) -> None:
        mode = self.auth_mode
        if mode == "unsigned":
            logger.warning(
                "SRPC auth: allow_unsigned=True, accepting unsigned connections "
                "(development only: anyone can connect as any client id)"
            )
        elif mode == "none":
            self._log_unconfigured_once()
        else:
            logger.info("SRPC auth: %s", _AUTH_MODE_TEXT[mode])

    def _log_unconfigured_once(self) -> None:
        if self._unconfigured_logged:
            return
        self._unconfigured_logged = True
        logger.error(
            "SRPC auth is not configured: refusing every connection with HTTP 500. Set "
            "SRPC_AUTH_SECRET (or auth_secret=), set_client_key_fetcher() or "
            "set_client_authorizer(); for local development only, allow_unsigned=True."
        )

    # --- streams ---------------------------------------------------------------------

    @property
    def streams_by_id(self) -> Mapping[str, SrpcStream]:
        """Live streams by the server's stream id (read-only view)."""
        return MappingProxyType(self._streams)

    @property
    def streams_by_client_id(self) -> Mapping[str, SrpcStream]:
        """Live streams by client id; after a reconnect, the newest stream (read-only view)."""
        return MappingProxyType(self._streams_by_client)

    # --- calling clients -------------------------------------------------------------

    if TYPE_CHECKING:
        # Generated subclasses add Literal-keyed overloads; see GENERATOR.md typing notes.
        def invoke(self, *args: Any, **kwargs: Any) -> Any: ...

    else:

        async def invoke(self, stream, prefix, request, timeout=DEFAULT_TIMEOUT):
            """Call the client on ``stream``: ``await invoke(stream, "dNotify", req)``."""
            return await self._invoke_stream(stream, prefix, request, timeout)

    async def _invoke_stream(
        self,
        stream: SrpcStream,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Any:
        """Typed implementation of :meth:`invoke` (None = the 30 s default timeout).

        Raises SrpcError when the client answers with an error or the stream is
        closed, TimeoutError when it does not answer in time.
        """
        session = stream.session
        if session is None:
            raise SrpcError(f"stream {stream.id} is not connected")
        return await session.invoke(
            prefix, request, DEFAULT_TIMEOUT if timeout is None else timeout
        )

    # --- extension points for subclasses ---------------------------------------------

    async def _on_stream_established(self, stream: SrpcStream) -> None:
        """Called once the WebSocket is accepted, before the first ping.

        Raise :class:`SrpcConflictError` to refuse the client with 4001 (cause
        ``conflict``); any other exception closes the stream (1011), so the client's
        connect fails promptly.
        """

    async def _on_stream_activating(self, stream: SrpcStream) -> None:
        """Called after the connection handlers succeeded; gates activation.

        Exceptions close the stream like in :meth:`_on_stream_established`.
        """

    async def _on_stream_activated(self, stream: SrpcStream) -> None:
        """Called once the stream is active; the client's requests wait until it returns."""

    async def _on_stream_closed(self, stream: SrpcStream, cause: CloseCause) -> None:
        """Called for every accepted stream when it has closed, before disconnect handlers.

        ``stream.is_activated`` tells whether it ever got active; the stream is already
        gone from :attr:`streams_by_id` (and from :attr:`streams_by_client_id` unless a
        newer stream of the same client replaced it).
        """

    async def close_stream(
        self, stream: SrpcStream, code: int, cause: CloseCause, reason: str = ""
    ) -> None:
        """Close ``stream`` with a close code and the cause its disconnect handlers see.

        Returns once the close is started; ``await stream_closed(stream)`` to wait for
        the cleanup (hooks and disconnect handlers) to finish.
        """
        if stream.session is not None:
            await stream.session.close(cause, reason, code=code)

    async def stream_closed(self, stream: SrpcStream) -> None:
        """Wait until ``stream`` is closed and its cleanup has run (``stream.wait_closed()``)."""
        await stream.wait_closed()

    # --- transports call these -------------------------------------------------------

    async def _authorize_upgrade(
        self, request: HandshakeRequest
    ) -> HandshakeAccepted | HandshakeRejected:
        """Decide an HTTP upgrade request (transports call this before accepting)."""
        if self._closing or self._draining:
            return HandshakeRejected(503, "Server is closing")
        if self.max_connections is not None and len(self._streams) >= self.max_connections:
            return HandshakeRejected(503, "Too many connections")
        if request.path != self.path:
            return HandshakeRejected(404, "Not found")
        verdict = await authenticate(
            request,
            secret=self.auth_secret,
            clock_drift=self.clock_drift,
            authorizer=self._authorizer,
            key_fetcher=self._key_fetcher,
            replay_guard=self._replay_guard,
            allow_unsigned=self.allow_unsigned,
            meta_schema=self.client_meta_schema,
        )
        if verdict is NOT_CONFIGURED:
            self._log_unconfigured_once()
        return verdict

    async def _serve(
        self, transport: Transport, request: HandshakeRequest, accepted: HandshakeAccepted
    ) -> None:
        """Run one accepted WebSocket until it closes (transports call this)."""
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            # Nothing needs the handshake (headers and all) once the stream exists; not
            # holding it keeps it out of every idle connection's memory.
            stream = self._new_stream(request, accepted)
            del request, accepted
            await self._serve_stream(transport, stream)
        finally:
            if task is not None:
                self._serving.discard(task)

    def _new_stream(self, request: HandshakeRequest, accepted: HandshakeAccepted) -> SrpcStream:
        query = request.query
        try:
            protocol_version = int(query.get("_v", "1") or "1")
        except ValueError:
            protocol_version = 1
        try:
            configure_ts: int | None = int(query["ts"]) if query.get("ts") else None
        except ValueError:
            configure_ts = None
        return SrpcStream(
            id=uuid7(),
            client_stream_id=query["id"],
            client_id=query["cid"],
            app_version=query["appv"],
            address=request.remote_address,
            configure_ts=configure_ts,
            protocol_version=protocol_version,
            supersede=query.get("_supersede") == "1",
            meta=StreamMeta(accepted.meta),
            connected_at=int(time.time() * 1000),
        )

    async def _serve_stream(self, transport: Transport, stream: SrpcStream) -> None:
        protocol = SrpcProtocol(
            self.client_schema,
            self.server_schema,
            max_frame_size=self.max_frame_size,
        )
        # A bare future, not an Event: it lives as long as the stream does.
        established: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The activation task, while it runs (a finished one is not kept for the
        # lifetime of the stream).
        activation: set[asyncio.Task[None]] = set()
        activation_started = False

        def on_ping() -> None:
            nonlocal activation_started
            session.send(protocol.ping())
            if not activation_started:
                activation_started = True
                task = asyncio.create_task(
                    self._activate(stream, established), name="srpc-activate"
                )
                activation.add(task)
                task.add_done_callback(activation.discard)

        session = SrpcSession(
            protocol,
            transport,
            dispatch=functools.partial(self._dispatch, stream),
            on_ping=on_ping,
            first_byte_stream_id=2,
            max_in_flight=self.max_in_flight,
            max_send_buffer=self.max_send_buffer,
            close_timeout=self.close_timeout,
            label=f"srpc[{stream.client_id!r}]",
            expose_errors=self.expose_errors,
            byte_stream_limits=self.byte_stream_limits,
            peer_max_frame_size=self.peer_max_frame_size,
        )
        stream.session = session
        self._streams[stream.id] = stream
        self._inactivity.ensure_running()
        run = asyncio.create_task(session.run(), name=f"srpc-stream-{stream.id}")
        announced = False
        try:
            announced = await self._establish(stream, session)
            if announced:
                established.set_result(None)
            await asyncio.shield(run)
        except BaseException:
            # Cancelled (server shutting down) or a bug in a hook: end the session too.
            if session.close_cause is None:
                session.close_cause = "disconnect"
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            raise
        finally:
            for task in list(activation):
                task.cancel()
            await asyncio.gather(*activation, return_exceptions=True)
            self._streams.pop(stream.id, None)
            if self._streams_by_client.get(stream.client_id) is stream:
                del self._streams_by_client[stream.client_id]
            cause = session.close_cause or "disconnect"
            logger.debug("stream %s (%r) closed: %s", stream.id, stream.client_id, cause)
            try:
                await self._run_close_hooks(stream, cause, announced)
            finally:
                stream._mark_cleaned_up()

    async def _run_close_hooks(
        self, stream: SrpcStream, cause: CloseCause, announced: bool
    ) -> None:
        try:
            await self._on_stream_closed(stream, cause)
        except Exception:
            logger.exception("_on_stream_closed failed for %r", stream.client_id)
        if not announced:
            return
        for handler in list(self._disconnect_handlers):
            try:
                await call_maybe_async(handler, stream, cause)
            except asyncio.CancelledError:
                raise
            except BaseException:
                # SystemExit / KeyboardInterrupt too: app code must not end the server.
                logger.exception("disconnect handler failed for %r", stream.client_id)

    async def _establish(self, stream: SrpcStream, session: SrpcSession) -> bool:
        """Same-client-id policy and the established hook; True once the first ping is out."""
        existing = self._streams_by_client.get(stream.client_id)
        if existing is not None and existing is not stream and existing.is_open:
            if stream.protocol_version >= 2 and not stream.supersede:
                logger.info("refusing %r: already connected (protocol v2)", stream.client_id)
                await session.close("conflict", "Client already connected")
                return False
            logger.info("client %r reconnected; superseding its old stream", stream.client_id)
            await self.close_stream(
                existing, CLOSE_CODES["supersede"], "supersede", "Superseded by a new connection"
            )
        self._streams_by_client[stream.client_id] = stream
        if not await self._run_gate(stream, session, self._on_stream_established):
            return False
        if not session.is_open:
            return False
        session.send(session.protocol.ping())
        return True

    async def _run_gate(
        self,
        stream: SrpcStream,
        session: SrpcSession,
        hook: Callable[[SrpcStream], Awaitable[None]],
    ) -> bool:
        try:
            await hook(stream)
        except SrpcConflictError as exc:
            await session.close("conflict", exc.message)
            return False
        except Exception as exc:
            logger.exception("%s failed for %r", getattr(hook, "__name__", hook), stream.client_id)
            await session.close("disconnect", str(exc), code=INTERNAL_ERROR_CODE)
            return False
        return True

    async def _activate(self, stream: SrpcStream, established: asyncio.Future[None]) -> None:
        await asyncio.shield(established)
        session = stream.session
        assert session is not None
        for handler in list(self._connection_handlers):
            try:
                await call_maybe_async(handler, stream)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                # SystemExit / KeyboardInterrupt too: app code must not end the server.
                logger.exception("connection handler failed for %r", stream.client_id)
                reason = str(exc) if isinstance(exc, Exception) else type(exc).__name__
                await session.close(
                    "disconnect", f"Connection handler failed: {reason}", code=INTERNAL_ERROR_CODE
                )
                return
            if not session.is_open:
                return
        if not await self._run_gate(stream, session, self._on_stream_activating):
            return
        if not session.is_open:
            return
        stream.is_activated = True
        try:
            await self._on_stream_activated(stream)
        except Exception:
            logger.exception("_on_stream_activated failed for %r", stream.client_id)
        if not session.is_open:
            return
        # The client's requests were held until activation had fully finished (as the
        # TypeScript server does): its handlers see what the activation set up.
        for event in session.protocol.activate():
            session.start_request(event)

    async def _dispatch(
        self, stream: SrpcStream, call: CallField, request: betterproto2.Message
    ) -> betterproto2.Message:
        handler = self._handlers.get(call.prefix)
        if handler is None:
            raise SrpcError(f"{UNHANDLED_MESSAGE_TYPE}: {call.prefix}")
        response = handler(stream, request)
        if inspect.isawaitable(response):
            response = await response
        expected = self._response_classes.get(call.prefix)
        if expected is None:
            found = self.server_schema.lookup(call.prefix, request=False)
            if found is None:
                raise SrpcError(f"{call.prefix} has no response message")
            expected = self._response_classes[call.prefix] = found.message_cls
        if not isinstance(response, expected):
            raise TypeError(
                f"handler for {call.prefix} returned {type(response).__name__}, "
                f"expected {expected.__name__}"
            )
        return response

    # --- serving ---------------------------------------------------------------------

    async def listen(
        self,
        host: str | None,
        port: int,
        ssl: ssl_module.SSLContext | None = None,
        *,
        transport: str | None = None,
    ) -> None:
        """Serve standalone until :meth:`close`; see :attr:`port`.

        ``transport`` is ``"picows"``, ``"websockets"`` or ``"auto"`` (picows when it
        can be imported and no compression is set, else websockets); None reads
        ``$MESHSRPC_TRANSPORT``, else auto.
        """
        if self._listener is not None:
            raise RuntimeError("already listening")
        self._closing = False
        self._draining = False
        if choose_transport(transport, compression=self.compression) == "picows":
            from .transports.picows import serve as serve_picows

            self._listener = await serve_picows(self, host, port, ssl=ssl)
        else:
            from .transports.websockets import serve

            self._listener = await serve(self, host, port, ssl=ssl)
        self._log_auth_mode()

    @property
    def port(self) -> int | None:
        """The TCP port :meth:`listen` bound (useful with ``port=0``)."""
        if self._listener is None:
            return None
        for sock in self._listener.sockets:
            return int(sock.getsockname()[1])
        return None

    @property
    def asgi(self) -> AsgiApp:
        """An ASGI app serving this server's path; mount it in Starlette/FastAPI."""
        if self._asgi is None:
            from .transports.asgi import AsgiApp

            self._asgi = AsgiApp(self)
            self._log_auth_mode()
        return self._asgi

    async def __aenter__(self) -> Self:
        """``async with server:`` closes the server on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def drain(self, timeout: float | None = None) -> None:
        """Move every client elsewhere (a rolling deploy): refuse new connections (503),
        let running requests answer (up to ``close_timeout``), then close every stream
        with 1012 (cause ``"restart"``), which SDK clients answer by reconnecting at
        once, to their next URL. Call :meth:`close` afterwards."""
        self._draining = True
        for stream in self._streams.values():
            if stream.session is not None:
                stream.session.stop_taking_requests()
        await self._wait_idle()
        for stream in list(self._streams.values()):
            await self.close_stream(
                stream, CLOSE_CODES["restart"], "restart", "Server restarting: reconnect"
            )
        if self._serving:
            await asyncio.wait(list(self._serving), timeout=self.close_timeout + 1)

    @property
    def is_draining(self) -> bool:
        """True from :meth:`drain` on: new connections are refused with 503."""
        return self._draining

    async def _wait_idle(self) -> None:
        busy = [
            asyncio.create_task(stream.session.wait_idle())
            for stream in self._streams.values()
            if stream.session is not None and stream.session.is_open
        ]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self.close_timeout)
            for task in pending:
                task.cancel()

    async def close(self) -> None:
        """Stop listening, let running requests answer (up to ``close_timeout``), then
        close every stream (1000) and wait for their cleanup."""
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close(close_connections=False)
        await self._wait_idle()
        for stream in list(self._streams.values()):
            await self.close_stream(
                stream, CLOSE_CODES["disconnect"], "disconnect", "Server closing"
            )
        if self._serving:
            await asyncio.wait(list(self._serving), timeout=self.close_timeout + 1)
        if listener is not None:
            await listener.wait_closed()
        await self._inactivity.stop()
