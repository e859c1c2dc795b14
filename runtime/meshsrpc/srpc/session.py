"""The asyncio side of one SRPC connection, shared by the server's streams and the client.

A :class:`SrpcSession` drives a :class:`~.protocol.SrpcProtocol` over a
:class:`~.transports.base.Transport`: a receive loop that hands the protocol each frame
with the time, an :class:`~.outbox.Outbox` for sending, one task per incoming request
(the protocol bounds them by ``max_in_flight``), reply futures and timeouts for
outgoing calls, and the byte-stream multiplexer. Everything that decides (close
cause, in-flight limit, activation gate, byte-stream bookkeeping) is in the objects
without I/O; this module owns the tasks, the timers and the clock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import betterproto2

from .._deadlines import Deadlines
from ..errors import SrpcError, SrpcStreamClosedError
from . import _tracing
from .bytestream import ByteStreamLimits, ByteStreamManager
from .eager import start_eagerly
from .frames import CallField
from .outbox import Outbox
from .protocol import (
    UNHANDLED_MESSAGE_TYPE,
    ByteStreamReceived,
    CloseCause,
    Event,
    PingReceived,
    ProtocolViolation,
    ReplyReceived,
    RequestLimitExceeded,
    RequestReceived,
    SrpcProtocol,
)
from .transports.base import PushingTransport, Transport

__all__ = ["RequestDispatcher", "SrpcSession"]

INTERNAL_ERROR_TEXT = "Internal server error"
"""What a client gets for a server handler's unexpected exception (unless exposed)."""

logger = logging.getLogger(__name__)

RequestDispatcher = Callable[[CallField, betterproto2.Message], Awaitable[betterproto2.Message]]
"""Runs the local handler for an incoming call and returns its response."""


def failure_text(exc: BaseException, label: str, prefix: str | None, *, expose: bool) -> str:
    """Log a handler's failure; the error text its caller gets."""
    if expose:
        logger.exception("%s: handler for %s failed", label, prefix)
        return f"{type(exc).__name__}: {exc}"
    # The exception may carry secrets (a DSN, a query): the caller gets an id
    # to quote, the log gets the details.
    error_id = secrets.token_hex(6)
    logger.exception("%s: handler for %s failed (error id %s)", label, prefix, error_id)
    return f"{INTERNAL_ERROR_TEXT} (error id {error_id})"


def check_frame_size(frame: bytes, limit: int | None, prefix: str, kind: str) -> None:
    """ValueError when ``frame`` (the ``<prefix>`` request or response) is over the peer's limit.

    The peer would close the whole connection on it (4000 or 1009): only this call fails.
    """
    if limit is not None and len(frame) > limit:
        raise ValueError(
            f"{prefix} {kind} of {len(frame)} bytes exceeds the peer's max frame size ({limit})"
        )


class SrpcSession:
    """One live SRPC connection: receive loop, writer, requests in both directions."""

    def __init__(
        self,
        protocol: SrpcProtocol,
        transport: Transport,
        *,
        dispatch: RequestDispatcher,
        on_ping: Callable[[], None],
        first_byte_stream_id: int,
        max_in_flight: int | None = None,
        max_send_buffer: int | None = None,
        close_timeout: float = 5.0,
        label: str = "srpc",
        expose_errors: bool = True,
        byte_stream_limits: ByteStreamLimits | None = None,
        peer_max_frame_size: int | None = None,
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.label = label
        self.max_in_flight = max_in_flight
        protocol.max_in_flight = max_in_flight
        protocol.mark_alive(time.monotonic())
        self.max_send_buffer = max_send_buffer
        self.close_timeout = close_timeout
        #: Send a failed handler's exception text to the peer (``"ValueError: boom"``,
        #: as the TypeScript peers' ``String(err)``); off: a generic text and an error id.
        self.expose_errors = expose_errors
        self.peer_max_frame_size = (
            peer_max_frame_size if peer_max_frame_size is not None else protocol.max_frame_size
        )
        """Largest frame the peer accepts: a bigger request or response fails here."""
        self._outbox = Outbox(
            transport, max_buffer=max_send_buffer, on_overflow=self._drop_slow_peer, label=label
        )
        self._first_byte_stream_id = first_byte_stream_id
        self._byte_streams: ByteStreamManager | None = None
        self._byte_stream_limits = byte_stream_limits
        self._dispatch = dispatch
        self._on_ping = on_ping
        self._futures: dict[str, asyncio.Future[betterproto2.Message]] = {}
        # Timeouts of our calls to the peer, by (request id, prefix, seconds): one timer
        # for all of them, not one per call.
        self._timeouts: Deadlines[tuple[str, str, float]] = Deadlines(self._expire)
        # Request tasks by id() of their RequestReceived event: a task finds its own
        # entry from the event it holds, without asyncio.current_task().
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._request_task_name = f"{label}-request"
        self._loop = asyncio.get_running_loop()  # sessions are made on their loop
        self._finished = False
        self._closed: asyncio.Event | None = None  # only once someone waits
        self._close_task: asyncio.Task[None] | None = None
        # A byte-stream frame taken from the transport's callback that waits for its
        # reader: nothing else is received until it is through.
        self._blocked: asyncio.Task[None] | None = None

    @property
    def byte_streams(self) -> ByteStreamManager:
        """The byte-stream multiplexer (created on first use)."""
        if self._byte_streams is None:
            self._byte_streams = ByteStreamManager(
                self, self.protocol, self._first_byte_stream_id, limits=self._byte_stream_limits
            )
        return self._byte_streams

    # --- lifecycle -------------------------------------------------------------------

    @property
    def close_cause(self) -> CloseCause | None:
        """Why the stream closes, once it is closing; the first cause wins."""
        return self.protocol.close_cause

    @close_cause.setter
    def close_cause(self, cause: CloseCause) -> None:
        # Close without a close frame (the caller drops the connection itself).
        self.protocol.close(cause)

    @property
    def is_open(self) -> bool:
        """True until the session starts closing."""
        return self.protocol.close_cause is None and not self._finished

    async def run(self) -> CloseCause:
        """Receive until the connection ends; clean up; return the close cause."""
        receive = self.protocol.receive
        monotonic, wall = time.monotonic, time.time
        transport = self.transport
        pushing = transport if isinstance(transport, PushingTransport) else None
        if pushing is not None:
            pushing.on_message = self._on_message
        try:
            while True:
                data = await self.transport.recv()
                if data is None:
                    break
                if (blocked := self._blocked) is not None:
                    # A byte-stream reader the pushed path fed is full: wait for it first.
                    self._blocked = None
                    await blocked
                for event in receive(data, monotonic(), int(wall() * 1000)):
                    # Requests are the hot path: no coroutine per event for them.
                    if isinstance(event, RequestReceived):
                        self.start_request(event)
                    elif (waiting := self._handle_event(event)) is not None:
                        await waiting
        except Exception:
            logger.exception("%s: receive loop failed; dropping the connection", self.label)
            self.protocol.close("disconnect")
            self.transport.abort()
        finally:
            if pushing is not None:
                pushing.on_message = None
            await self._cleanup()
        return self.protocol.close_cause or "disconnect"

    def _on_message(self, data: bytes | str) -> bool:
        """Take one message straight from the transport's data callback (while :meth:`run`
        waits for the next one): False when it has to go through ``recv()`` instead."""
        blocked = self._blocked
        if self._finished or (blocked is not None and not blocked.done()):
            return False
        try:
            if blocked is not None:
                self._blocked = None
                blocked.result()  # its failure drops the connection, as in run()
            for event in self.protocol.receive(data, time.monotonic(), int(time.time() * 1000)):
                if isinstance(event, RequestReceived):
                    self.start_request(event)
                elif (waiting := self._handle_event(event)) is not None:
                    started = start_eagerly(waiting, self._loop, name=self.label)
                    # Later messages wait in the transport until this one is through.
                    self._blocked = started.task
        except Exception:
            logger.exception("%s: receive failed; dropping the connection", self.label)
            self.protocol.close("disconnect")
            self.transport.abort()
        return True

    async def _cleanup(self) -> None:
        cause = self.protocol.connection_lost(self.transport.close_code)
        self._finished = True
        if self._closed is not None:
            self._closed.set()
        self._outbox.wake()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(SrpcStreamClosedError(cause))
        self._futures.clear()
        self._timeouts.clear()
        if self._byte_streams is not None:
            self._byte_streams.fail_all(f"stream closed ({cause})")
        others = (self._outbox.writer, self._blocked)
        tasks = [*self._tasks.values(), *(t for t in others if t is not None)]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()  # a task cancelled before it started never removed itself

    async def wait_idle(self) -> None:
        """Wait until no incoming request is being handled."""
        while running := [task for task in self._tasks.values() if not task.done()]:
            await asyncio.wait(running)

    async def wait_closed(self) -> None:
        """Wait until the receive loop has ended and the session is cleaned up."""
        if self._finished:
            return
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    async def close(self, cause: CloseCause, reason: str = "", *, code: int | None = None) -> None:
        """Close with the cause's code (or ``code``); frames already queued go first."""
        self._start_close(cause, reason, code)

    def _start_close(self, cause: CloseCause, reason: str = "", code: int | None = None) -> None:
        if self._finished:
            return
        close = self.protocol.close(cause, reason, code=code)
        if close is None:
            return
        logger.debug("%s: closing with %s (%s) %s", self.label, close[0], cause, reason)
        if self._byte_streams is not None:
            # The receive loop may be waiting for a slow reader: it must see the close.
            self._byte_streams.stop_waiting()
        self._outbox.close(*close)
        self._close_task = self._loop.create_task(
            self._close_watchdog(), name=f"{self.label}-close"
        )

    async def _close_watchdog(self) -> None:
        # A peer that stopped reading never lets the close frame out: abort after a bound.
        try:
            await asyncio.wait_for(self.wait_closed(), self.close_timeout)
        except TimeoutError:
            logger.info("%s: peer did not finish closing; aborting", self.label)
            self.transport.abort()

    # --- sending ---------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send one frame, or queue it; a peer that lets the buffer exceed the limit is dropped."""
        if self.protocol.close_cause is not None or self._finished:
            return
        self._outbox.send(data)

    @property
    def send_buffer_size(self) -> int:
        """Bytes queued here plus bytes the transport has not written yet."""
        return self._outbox.size

    async def drain(self) -> None:
        """Wait until the send buffer is low again (byte-stream writers use this)."""
        while self._outbox.above_low_water and self.is_open:
            await self._outbox.wait_drained()
        if not self.is_open:
            raise SrpcError(f"stream closed ({self.close_cause})")

    def _drop_slow_peer(self) -> None:
        logger.warning("%s: peer is not reading (send buffer full); dropping it", self.label)
        self.protocol.close("timeout")
        if self._byte_streams is not None:
            self._byte_streams.stop_waiting()
        self._outbox.clear()
        self.transport.abort()

    # --- events ----------------------------------------------------------------------

    def _handle_event(self, event: Event) -> Coroutine[Any, Any, None] | None:
        """Handle one event; what is left to await (a byte-stream frame), if anything."""
        if isinstance(event, PingReceived):
            self._on_ping()
        elif isinstance(event, RequestReceived):
            self.start_request(event)
        elif isinstance(event, ReplyReceived):
            self._resolve(event)
        elif isinstance(event, ByteStreamReceived):
            return self.byte_streams.on_operation(event.operation)
        elif isinstance(event, ProtocolViolation):
            logger.info("%s: protocol violation: %s", self.label, event.reason)
            self._start_close("badArg", event.reason)
        elif isinstance(event, RequestLimitExceeded):
            self._start_close("badArg", event.reason)
        return None

    def stop_taking_requests(self) -> None:
        """Run no request received from now on (a draining server): the stream is about
        to close with 1012, and a call that was not run may then be sent again."""
        self.protocol.refuse_requests()

    def start_request(self, event: RequestReceived) -> None:
        """Run one incoming request (handed out by the protocol) in its own task, so that
        a slow handler blocks nothing."""
        if self._finished:
            self.protocol.request_done()
            return
        # loop.create_task with the name: asyncio.create_task first has the task
        # format a default "Task-<n>" name, then replaces it (a third of the cost).
        # Not started eagerly where 3.12 could: measured, a handler run inside the
        # transport's read callback answers sooner at 10 clients but costs more CPU
        # per request at 50 (bench/results/h8-corking).
        task = self._loop.create_task(self._run_request(event), name=self._request_task_name)
        # _run_request removes itself when it ends: a done callback would cost one
        # more event-loop iteration per request.
        self._tasks[id(event)] = task

    async def _run_request(self, event: RequestReceived) -> None:
        call, value = event.call, event.value
        try:
            if call is None or value is None:
                what = event.member or "empty request"
                raise SrpcError(f"{UNHANDLED_MESSAGE_TYPE}: {what}")
            if event.trace is None:
                response = await self._dispatch(call, value)
            else:
                with _tracing.remote_parent(event.trace):
                    response = await self._dispatch(call, value)
            frame = self.protocol.reply(event.request_id, call, response)
            check_frame_size(frame, self.peer_max_frame_size, call.prefix, "response")
        except asyncio.CancelledError:
            self._tasks.pop(id(event), None)
            self.protocol.request_done()
            raise
        except SrpcError as exc:
            frame = self._failed_request(event, exc.message, user_error=exc.is_user_error)
        except Exception as exc:
            prefix = call.prefix if call is not None else event.member
            text = failure_text(exc, self.label, prefix, expose=self.expose_errors)
            frame = self._failed_request(event, text, user_error=False)
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt from handler code (argparse exits on bad
            # input): it fails this request, not the whole server.
            prefix = call.prefix if call is not None else event.member
            logger.exception("%s: handler for %s raised %r", self.label, prefix, exc)
            frame = self._failed_request(
                event, f"handler raised {type(exc).__name__}", user_error=False
            )
        self._tasks.pop(id(event), None)
        self.protocol.request_done()
        self.send(frame)

    def _failed_request(self, event: RequestReceived, message: str, *, user_error: bool) -> bytes:
        # An upload the failed handler was reading is refused with it, so that its
        # writer stops and the receive loop never waits for that reader.
        if self._byte_streams is not None:
            # This runs in the request's own task.
            self._byte_streams.release_owned(asyncio.current_task(), f"request failed: {message}")
        return self.protocol.error_reply(event.request_id, message, user_error=user_error)

    def _resolve(self, event: ReplyReceived) -> None:
        fut = self._futures.pop(event.request_id, None)
        if fut is None or fut.done():
            return
        if event.error is not None:
            fut.set_exception(SrpcError(event.error, event.user_error))
            return
        expected = self.protocol.incoming.lookup(event.expected.prefix, request=False)
        if event.value is None or expected is None or event.member != expected.attr:
            got = event.member or "nothing"
            fut.set_exception(SrpcError(f"{event.expected.prefix}: unexpected reply ({got})"))
            return
        fut.set_result(event.value)

    # --- calling the peer ------------------------------------------------------------

    def _expire(self, deadline: tuple[str, str, float]) -> None:
        request_id, prefix, timeout = deadline
        fut = self._futures.get(request_id)
        if fut is not None and not fut.done():
            fut.set_exception(TimeoutError(f"{prefix} got no reply within {timeout} s"))

    async def invoke(
        self,
        prefix: str,
        request: betterproto2.Message,
        timeout: float | None,
    ) -> Any:
        """Call the peer and wait for its response (SrpcError on an error reply)."""
        try:
            call = self.protocol.outgoing_call(prefix)
        except KeyError:
            raise ValueError(f"unknown call prefix {prefix!r}") from None
        if not isinstance(request, call.message_cls):
            raise TypeError(
                f"{prefix} expects {call.message_cls.__name__}, got {type(request).__name__}"
            )
        if not self.is_open:
            raise SrpcError(f"stream closed ({self.close_cause})")
        trace = _tracing.current_trace(self.protocol.outgoing.trace_cls)
        try:
            request_id, frame = self.protocol.request(call, request, trace=trace)
        except Exception as exc:
            raise SrpcError(f"{prefix} request cannot be encoded: {exc}") from exc
        try:
            check_frame_size(frame, self.peer_max_frame_size, prefix, "request")
        except ValueError as exc:
            self.protocol.forget(request_id)
            raise SrpcError(str(exc)) from None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[betterproto2.Message] = loop.create_future()
        self._futures[request_id] = fut
        self.send(frame)
        # A deadline that fails the future: cheaper than an asyncio.timeout() context.
        deadline = None if timeout is None else (request_id, prefix, timeout)
        if deadline is not None:
            self._timeouts.set(deadline, loop.time() + deadline[2])
        try:
            return await fut
        finally:
            if deadline is not None:
                self._timeouts.discard(deadline)
            self._futures.pop(request_id, None)
            self.protocol.forget(request_id, expired=True)
