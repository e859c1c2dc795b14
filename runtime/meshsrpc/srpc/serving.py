"""Serving accepted connections: one :class:`SrpcStream` per WebSocket, from accept to cleanup.

The steps of one stream, and the hook (:class:`StreamHooks`) each one calls:

1. accepted → the same-client-id check (v1 kicks the old stream with 4002, v2 refuses
   the newcomer with 4001 unless ``_supersede=1``) → ``established``;
2. the server sends ``{pingPong}``; on the client's first pong the connection handlers
   run (they may call the client), then ``activating`` gates activation, the stream
   becomes active, ``activated`` is called, and then the requests queued so far run
   in order;
3. on close → ``closed`` (every accepted stream) and the disconnect handlers (streams
   that got past step 1).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import betterproto2

from ..errors import SrpcConflictError, SrpcError
from ._callbacks import call_maybe_async
from .auth import HandshakeAccepted, HandshakeRequest
from .bytestream import ByteStreamLimits
from .frames import CallField, FrameSchema
from .ids import uuid7
from .liveness import InactivityMonitor
from .protocol import CLOSE_CODES, UNHANDLED_MESSAGE_TYPE, CloseCause, SrpcProtocol
from .session import SrpcSession
from .stream import SrpcStream, StreamMeta, mark_cleaned_up
from .transports.base import Transport

__all__ = [
    "DEFAULT_TIMEOUT",
    "ConnectionHandler",
    "DisconnectHandler",
    "ServerHandlers",
    "ServerMessageHandler",
    "SessionSettings",
    "StreamHooks",
    "StreamServing",
    "close_stream",
    "invoke_stream",
]

# What happens to streams is the server's to log (operators filter its logger).
logger = logging.getLogger("meshsrpc.srpc.server")

ServerMessageHandler: TypeAlias = Callable[[SrpcStream, Any], Any]
"""handler(stream, request) -> response (or an awaitable of it)."""
ConnectionHandler: TypeAlias = Callable[[SrpcStream], Any]
"""handler(stream), sync or async; raising disconnects the stream."""
DisconnectHandler: TypeAlias = Callable[[SrpcStream, CloseCause], Any]
"""handler(stream, cause), sync or async; errors are logged."""

DEFAULT_TIMEOUT = 30.0
INTERNAL_ERROR_CODE = 1011


async def invoke_stream(
    stream: SrpcStream,
    prefix: str,
    request: betterproto2.Message,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Any:
    """Call the client on ``stream`` (None = the 30 s default timeout).

    Raises SrpcError when the client answers with an error or the stream is closed,
    TimeoutError when it does not answer in time.
    """
    session = stream.session
    if session is None:
        raise SrpcError(f"stream {stream.id} is not connected")
    return await session.invoke(prefix, request, DEFAULT_TIMEOUT if timeout is None else timeout)


async def close_stream(stream: SrpcStream, code: int, cause: CloseCause, reason: str = "") -> None:
    """Start closing ``stream`` with a close code and the cause its handlers see."""
    if stream.session is not None:
        await stream.session.close(cause, reason, code=code)


class SessionSettings(Protocol):
    """The server settings a new stream's session reads (each time: they may change)."""

    @property
    def client_schema(self) -> FrameSchema[Any]: ...
    @property
    def server_schema(self) -> FrameSchema[Any]: ...
    @property
    def max_frame_size(self) -> int: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def max_send_buffer(self) -> int: ...
    @property
    def close_timeout(self) -> float: ...
    @property
    def expose_errors(self) -> bool: ...
    @property
    def byte_stream_limits(self) -> ByteStreamLimits: ...
    @property
    def peer_max_frame_size(self) -> int | None: ...
    @property
    def inactivity_timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StreamHooks:
    """The server's extension points, called at each step of a stream (see the module doc)."""

    established: Callable[[SrpcStream], Awaitable[None]]
    activating: Callable[[SrpcStream], Awaitable[None]]
    activated: Callable[[SrpcStream], Awaitable[None]]
    closed: Callable[[SrpcStream, CloseCause], Awaitable[None]]


class ServerHandlers:
    """The app's handlers: requests by prefix, connection and disconnect handlers."""

    def __init__(self, server_schema: FrameSchema[Any]) -> None:
        self._server_schema = server_schema
        self.messages: dict[str, ServerMessageHandler] = {}
        self.connection: list[ConnectionHandler] = []
        self.disconnect: list[DisconnectHandler] = []
        self._response_classes: dict[str, type[betterproto2.Message]] = {}

    async def dispatch(
        self, stream: SrpcStream, call: CallField, request: betterproto2.Message
    ) -> betterproto2.Message:
        """Run the handler of ``call`` and check that it answered with the right message."""
        handler = self.messages.get(call.prefix)
        if handler is None:
            raise SrpcError(f"{UNHANDLED_MESSAGE_TYPE}: {call.prefix}")
        response = handler(stream, request)
        # An async def handler's coroutine first: inspect.isawaitable costs more.
        if type(response) is types.CoroutineType or inspect.isawaitable(response):
            response = await response
        expected = self._response_classes.get(call.prefix)
        if expected is None:
            found = self._server_schema.lookup(call.prefix, request=False)
            if found is None:
                raise SrpcError(f"{call.prefix} has no response message")
            expected = self._response_classes[call.prefix] = found.message_cls
        if not isinstance(response, expected):
            raise TypeError(
                f"handler for {call.prefix} returned {type(response).__name__}, "
                f"expected {expected.__name__}"
            )
        return response


def new_stream(request: HandshakeRequest, accepted: HandshakeAccepted) -> SrpcStream:
    """The stream an accepted upgrade request becomes (not connected yet)."""
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


class StreamServing:
    """Every live stream of one server, and the task serving each until its cleanup ran."""

    def __init__(
        self, settings: SessionSettings, handlers: ServerHandlers, hooks: StreamHooks
    ) -> None:
        self._settings = settings
        self._handlers = handlers
        self._hooks = hooks
        self.by_id: dict[str, SrpcStream] = {}
        self.by_client: dict[str, SrpcStream] = {}
        """Live streams by client id; after a reconnect, the newest stream."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """The tasks serving a connection, until its cleanup has run."""
        self.inactivity = InactivityMonitor(
            lambda: settings.inactivity_timeout, lambda: self.by_id.values()
        )

    async def serve(
        self, transport: Transport, request: HandshakeRequest, accepted: HandshakeAccepted
    ) -> None:
        """Run one accepted WebSocket until it closes and its cleanup has run."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            # Nothing needs the handshake (headers and all) once the stream exists; not
            # holding it keeps it out of every idle connection's memory.
            stream = new_stream(request, accepted)
            del request, accepted
            await self._serve_stream(transport, stream)
        finally:
            if task is not None:
                self.tasks.discard(task)

    async def _serve_stream(self, transport: Transport, stream: SrpcStream) -> None:
        settings = self._settings
        protocol = SrpcProtocol(
            settings.client_schema,
            settings.server_schema,
            max_frame_size=settings.max_frame_size,
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
            dispatch=functools.partial(self._handlers.dispatch, stream),
            on_ping=on_ping,
            first_byte_stream_id=2,
            max_in_flight=settings.max_in_flight,
            max_send_buffer=settings.max_send_buffer,
            close_timeout=settings.close_timeout,
            label=f"srpc[{stream.client_id!r}]",
            expose_errors=settings.expose_errors,
            byte_stream_limits=settings.byte_stream_limits,
            peer_max_frame_size=settings.peer_max_frame_size,
        )
        stream.session = session
        self.by_id[stream.id] = stream
        self.inactivity.ensure_running()
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
            self.by_id.pop(stream.id, None)
            if self.by_client.get(stream.client_id) is stream:
                del self.by_client[stream.client_id]
            cause = session.close_cause or "disconnect"
            logger.debug("stream %s (%r) closed: %s", stream.id, stream.client_id, cause)
            try:
                await self._run_close_hooks(stream, cause, announced)
            finally:
                mark_cleaned_up(stream)

    async def _run_close_hooks(
        self, stream: SrpcStream, cause: CloseCause, announced: bool
    ) -> None:
        try:
            await self._hooks.closed(stream, cause)
        except Exception:
            logger.exception("_on_stream_closed failed for %r", stream.client_id)
        if not announced:
            return
        for handler in list(self._handlers.disconnect):
            try:
                await call_maybe_async(handler, stream, cause)
            except asyncio.CancelledError:
                raise
            except BaseException:
                # SystemExit / KeyboardInterrupt too: app code must not end the server.
                logger.exception("disconnect handler failed for %r", stream.client_id)

    async def _establish(self, stream: SrpcStream, session: SrpcSession) -> bool:
        """Same-client-id policy and the established hook; True once the first ping is out."""
        existing = self.by_client.get(stream.client_id)
        if existing is not None and existing is not stream and existing.is_open:
            if stream.protocol_version >= 2 and not stream.supersede:
                logger.info("refusing %r: already connected (protocol v2)", stream.client_id)
                await session.close("conflict", "Client already connected")
                return False
            logger.info("client %r reconnected; superseding its old stream", stream.client_id)
            await close_stream(
                existing, CLOSE_CODES["supersede"], "supersede", "Superseded by a new connection"
            )
        self.by_client[stream.client_id] = stream
        if not await self._run_gate(stream, session, self._hooks.established):
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
        for handler in list(self._handlers.connection):
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
        if not await self._run_gate(stream, session, self._hooks.activating):
            return
        if not session.is_open:
            return
        stream.is_activated = True
        try:
            await self._hooks.activated(stream)
        except Exception:
            logger.exception("_on_stream_activated failed for %r", stream.client_id)
        if not session.is_open:
            return
        # The client's requests were held until activation had fully finished (as the
        # TypeScript server does): its handlers see what the activation set up.
        for event in session.protocol.activate():
            session.start_request(event)

    def stop_taking_requests(self) -> None:
        """Run no request received from now on (a draining server); replies still go out."""
        for stream in self.by_id.values():
            if stream.session is not None:
                stream.session.stop_taking_requests()

    async def wait_idle(self, timeout: float) -> None:
        """Let running requests answer, for at most ``timeout`` seconds."""
        busy = [
            asyncio.create_task(stream.session.wait_idle())
            for stream in self.by_id.values()
            if stream.session is not None and stream.session.is_open
        ]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=timeout)
            for task in pending:
                task.cancel()

    async def close_all(self, code: int, cause: CloseCause, reason: str, timeout: float) -> None:
        """Close every stream, then wait (at most ``timeout`` s) for their cleanup."""
        for stream in list(self.by_id.values()):
            await close_stream(stream, code, cause, reason)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
