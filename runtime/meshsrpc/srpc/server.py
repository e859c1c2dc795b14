"""SrpcServer: accepts SRPC clients over any transport and calls them back.

The server composes three parts: :class:`~.admission.Admission` decides upgrade
requests, :class:`~.serving.StreamServing` runs each accepted connection (the steps of
one stream are in :mod:`meshsrpc.srpc.serving`), and :attr:`SrpcServer.acceptor` is
what transports see of both (the contract of :mod:`meshsrpc.srpc.transports.base`).
Every step of a stream is a hook a subclass such as ``MeshSrpcServer`` can extend:
:meth:`~SrpcServer._on_stream_established`, :meth:`~SrpcServer._on_stream_activating`,
:meth:`~SrpcServer._on_stream_activated` and :meth:`~SrpcServer._on_stream_closed`.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import betterproto2

from .admission import Admission, AuthMode
from .auth import (
    Authorizer,
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeRequest,
    KeyFetcher,
    ReplayGuard,
)
from .bytestream import PENDING_MAX_CONNECTION_BYTES, PENDING_MAX_STREAMS, ByteStreamLimits
from .clientmeta import ClientMetaSchema
from .frames import FrameSchema
from .protocol import CLOSE_CODES, CloseCause
from .serving import (
    DEFAULT_TIMEOUT,
    ConnectionHandler,
    DisconnectHandler,
    ServerHandlers,
    ServerMessageHandler,
    StreamHooks,
    StreamServing,
    close_stream,
    invoke_stream,
)
from .stream import SrpcStream
from .transports.base import ConnectionAcceptor, Transport
from .transports.choice import choose_transport

if TYPE_CHECKING:
    import ssl as ssl_module

    from .transports.asgi import AsgiApp

__all__ = [
    "AuthMode",
    "ConnectionHandler",
    "DisconnectHandler",
    "ServerMessageHandler",
    "SrpcServer",
]

ClientMsgT = TypeVar("ClientMsgT", bound=betterproto2.Message)
ServerMsgT = TypeVar("ServerMsgT", bound=betterproto2.Message)


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
        self.clock_drift = clock_drift
        self.max_frame_size = max_frame_size
        self.max_in_flight = max_in_flight
        self.max_send_buffer = max_send_buffer
        self.close_timeout = close_timeout
        self.compression = compression
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.peer_max_frame_size = peer_max_frame_size
        #: Seconds a stream may stay silent before it is closed with 4003.
        self.inactivity_timeout = inactivity_timeout
        self.byte_stream_limits = ByteStreamLimits(
            max_bytes=max_early_data, max_streams=max_early_streams
        )
        self._admission = Admission(self, replay_protection=replay_protection)
        self._handlers = ServerHandlers(self.server_schema)
        hooks = StreamHooks(
            established=self._on_stream_established,
            activating=self._on_stream_activating,
            activated=self._on_stream_activated,
            closed=self._on_stream_closed,
        )
        self._serving = StreamServing(self, self._handlers, hooks)
        self.acceptor: ConnectionAcceptor = _ServerAcceptor(self, self._admission, self._serving)
        """This server as transports see it (:class:`~.transports.base.ConnectionAcceptor`).

        Hand it to a transport of your own: ``await server.acceptor.authorize(request)``
        decides an upgrade request, ``await server.acceptor.serve(transport, request,
        accepted)`` runs the accepted connection.
        """
        self._listener: Any = None
        self._asgi: AsgiApp | None = None

    # --- registration ----------------------------------------------------------------

    def register_message_handler(self, prefix: str, handler: ServerMessageHandler) -> None:
        """Handle the client's ``<prefix>Request``: handler(stream, request) -> response."""
        call = self.client_schema.lookup(prefix, request=True)
        if call is None:
            known = ", ".join(sorted(self.client_schema.prefixes(request=True)))
            raise ValueError(f"{prefix!r} is not a client request (known: {known})")
        self._handlers.messages[call.prefix] = handler

    def register_connection_handler(self, handler: ConnectionHandler) -> None:
        """Run handler(stream) after the client's first pong, before activation."""
        self._handlers.connection.append(handler)

    def register_disconnect_handler(self, handler: DisconnectHandler) -> None:
        """Run handler(stream, cause) when a stream closes."""
        self._handlers.disconnect.append(handler)

    def set_client_authorizer(self, authorizer: Authorizer | None) -> None:
        """Replace the signature check with fn(query, request) -> bool | dict."""
        self._admission.authorizer = authorizer

    def set_client_key_fetcher(self, fetcher: KeyFetcher | None) -> None:
        """Verify signatures with a per-client secret: fn(client_id) -> secret | None."""
        self._admission.key_fetcher = fetcher

    def set_replay_guard(self, guard: ReplayGuard | None) -> None:
        """Store accepted signatures in ``guard`` (None: accept a signed URL repeatedly)."""
        self._admission.replay_guard = guard

    @property
    def auth_mode(self) -> AuthMode:
        """How upgrades are authenticated now; ``"none"`` refuses every connection (500)."""
        return self._admission.auth_mode

    # --- streams ---------------------------------------------------------------------

    @property
    def streams_by_id(self) -> Mapping[str, SrpcStream]:
        """Live streams by the server's stream id (read-only view)."""
        return MappingProxyType(self._serving.by_id)

    @property
    def streams_by_client_id(self) -> Mapping[str, SrpcStream]:
        """Live streams by client id; after a reconnect, the newest stream (read-only view)."""
        return MappingProxyType(self._serving.by_client)

    # --- calling clients -------------------------------------------------------------

    if TYPE_CHECKING:
        # Generated subclasses add Literal-keyed overloads; see GENERATOR.md typing notes.
        def invoke(self, *args: Any, **kwargs: Any) -> Any: ...

    else:

        async def invoke(self, stream, prefix, request, timeout=DEFAULT_TIMEOUT):
            """Call the client on ``stream``: ``await invoke(stream, "dNotify", req)``."""
            return await invoke_stream(stream, prefix, request, timeout)

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
        await close_stream(stream, code, cause, reason)

    async def stream_closed(self, stream: SrpcStream) -> None:
        """Wait until ``stream`` is closed and its cleanup has run (``stream.wait_closed()``)."""
        await stream.wait_closed()

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
        self._admission.closing = False
        self._admission.draining = False
        if choose_transport(transport, compression=self.compression) == "picows":
            from .transports.picows import serve as serve_picows

            self._listener = await serve_picows(self.acceptor, host, port, ssl=ssl)
        else:
            from .transports.websockets import serve

            self._listener = await serve(self.acceptor, host, port, ssl=ssl)
        self._admission.log_auth_mode()

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

            self._asgi = AsgiApp(self.acceptor, on_shutdown=self.close)
            self._admission.log_auth_mode()
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
        self._admission.draining = True
        self._serving.stop_taking_requests()
        await self._serving.wait_idle(self.close_timeout)
        await self._serving.close_all(
            CLOSE_CODES["restart"],
            "restart",
            "Server restarting: reconnect",
            timeout=self.close_timeout + 1,
        )

    @property
    def is_draining(self) -> bool:
        """True from :meth:`drain` on: new connections are refused with 503."""
        return self._admission.draining

    async def close(self) -> None:
        """Stop listening, let running requests answer (up to ``close_timeout``), then
        close every stream (1000) and wait for their cleanup."""
        self._admission.closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close(close_connections=False)
        await self._serving.wait_idle(self.close_timeout)
        await self._serving.close_all(
            CLOSE_CODES["disconnect"],
            "disconnect",
            "Server closing",
            timeout=self.close_timeout + 1,
        )
        if listener is not None:
            await listener.wait_closed()
        await self._serving.inactivity.stop()


class _ServerAcceptor:
    """:attr:`SrpcServer.acceptor`: the server's side of the transport contract."""

    def __init__(
        self, server: SrpcServer[Any, Any], admission: Admission, serving: StreamServing
    ) -> None:
        self._server = server
        self._admission = admission
        self._serving = serving

    @property
    def path(self) -> str:
        return self._server.path

    @property
    def max_frame_size(self) -> int:
        return self._server.max_frame_size

    @property
    def handshake_timeout(self) -> float:
        return self._server.handshake_timeout

    @property
    def close_timeout(self) -> float:
        return self._server.close_timeout

    @property
    def compression(self) -> str | None:
        return self._server.compression

    async def authorize(self, request: HandshakeRequest) -> HandshakeAccepted | HandshakeRejected:
        """Decide an upgrade request (503 / 404 / 400 / 403 / 500, or accept)."""
        return await self._admission.decide(request, len(self._serving.by_id))

    def serve(
        self, transport: Transport, request: HandshakeRequest, accepted: HandshakeAccepted
    ) -> Coroutine[Any, Any, None]:
        """Run an accepted connection until it has closed and its cleanup has run."""
        # Not a coroutine of its own: its frame would hold the handshake (headers and
        # all) for the whole life of the connection.
        return self._serving.serve(transport, request, accepted)
