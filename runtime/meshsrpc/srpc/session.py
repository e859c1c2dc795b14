"""The asyncio side of one SRPC connection, shared by the server's streams and the client.

A :class:`SrpcSession` drives a :class:`~.protocol.SrpcProtocol` over a
:class:`~.transports.base.Transport`: a receive loop, sending with a bounded send
buffer (straight to the transport, or through a writer task while the transport makes
us wait), one task per incoming request (bounded by ``max_in_flight``), reply futures
for outgoing calls, and the byte-stream multiplexer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import betterproto2

from .._deadlines import Deadlines
from ..errors import SrpcError, SrpcStreamClosedError
from . import _tracing
from .bytestream import ByteStreamLimits, ByteStreamManager
from .frames import CallField
from .protocol import (
    CLOSE_CODES,
    UNHANDLED_MESSAGE_TYPE,
    ByteStreamReceived,
    CloseCause,
    Event,
    PingReceived,
    ProtocolViolation,
    ReplyReceived,
    RequestReceived,
    SrpcProtocol,
    cause_for_close_code,
    truncate_reason,
)
from .transports.base import Transport

__all__ = ["RequestDispatcher", "SrpcSession"]

INTERNAL_ERROR_TEXT = "Internal server error"
"""What a client gets for a server handler's unexpected exception (unless exposed)."""

logger = logging.getLogger(__name__)

RequestDispatcher = Callable[[CallField, betterproto2.Message], Awaitable[betterproto2.Message]]
"""Runs the local handler for an incoming call and returns its response."""

_CLOSE = object()


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
        self.max_send_buffer = max_send_buffer
        self.close_timeout = close_timeout
        #: Send a failed handler's exception text to the peer (``"ValueError: boom"``,
        #: as the TypeScript peers' ``String(err)``); off: a generic text and an error id.
        self.expose_errors = expose_errors
        self.peer_max_frame_size = (
            peer_max_frame_size if peer_max_frame_size is not None else protocol.max_frame_size
        )
        """Largest frame the peer accepts: a bigger request or response fails here."""
        self.close_cause: CloseCause | None = None
        """Set once the stream is closing; the first cause wins."""
        self._first_byte_stream_id = first_byte_stream_id
        self._byte_streams: ByteStreamManager | None = None
        self._byte_stream_limits = byte_stream_limits
        self._dispatch = dispatch
        self._on_ping = on_ping
        self._futures: dict[str, asyncio.Future[betterproto2.Message]] = {}
        self._refusing = False
        # Timeouts of our calls to the peer, by (request id, prefix, seconds): one timer
        # for all of them, not one per call.
        self._timeouts: Deadlines[tuple[str, str, float]] = Deadlines(self._expire)
        # Request tasks by id() of their RequestReceived event: a task finds its own
        # entry from the event it holds, without asyncio.current_task().
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._request_task_name = f"{label}-request"
        self._loop: asyncio.AbstractEventLoop | None = None
        # Frames go straight to the transport while it can take them without waiting;
        # the queue and the writer task exist only while something has to wait (a
        # slow peer, a close). Idle connections then hold no task and no queue.
        self._queue: deque[bytes | object] | None = None
        self._buffered = 0
        self._writer_task: asyncio.Task[None] | None = None
        self._send_failed = False
        self._close_args: tuple[int, str] = (CLOSE_CODES["disconnect"], "")
        self._finished = False
        # Created only when someone waits (most connections never do).
        self._drained: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._close_task: asyncio.Task[None] | None = None

    @property
    def byte_streams(self) -> ByteStreamManager:
        """The byte-stream multiplexer (created on first use)."""
        if self._byte_streams is None:
            self._byte_streams = ByteStreamManager(
                self, self._first_byte_stream_id, limits=self._byte_stream_limits
            )
        return self._byte_streams

    # --- lifecycle -------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True until the session starts closing."""
        return self.close_cause is None and not self._finished

    async def run(self) -> CloseCause:
        """Receive until the connection ends; clean up; return the close cause."""
        try:
            while True:
                data = await self.transport.recv()
                if data is None:
                    break
                for event in self.protocol.receive(data):
                    # Requests are the hot path: no coroutine per event for them.
                    if isinstance(event, RequestReceived):
                        self.start_request(event)
                    else:
                        await self._handle_event(event)
                if (
                    self.max_in_flight is not None
                    and len(self._tasks) + self.protocol.queued_requests > self.max_in_flight
                    and self.is_open
                ):
                    await self.close("badArg", f"More than {self.max_in_flight} requests in flight")
        except Exception:
            logger.exception("%s: receive loop failed; dropping the connection", self.label)
            if self.close_cause is None:
                self.close_cause = "disconnect"
            self.transport.abort()
        finally:
            await self._cleanup()
        return self.close_cause or "disconnect"

    async def _cleanup(self) -> None:
        if self.close_cause is None:
            self.close_cause = cause_for_close_code(self.transport.close_code)
        self._finished = True
        if self._closed is not None:
            self._closed.set()
        if self._drained is not None:
            self._drained.set()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(SrpcStreamClosedError(self.close_cause))
        self._futures.clear()
        self._timeouts.clear()
        if self._byte_streams is not None:
            self._byte_streams.fail_all(f"stream closed ({self.close_cause})")
        tasks = [*self._tasks.values(), *(t for t in (self._writer_task,) if t is not None)]
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
        if self.close_cause is not None or self._finished:
            return
        self.close_cause = cause
        close_code = code if code is not None else CLOSE_CODES[cause]
        logger.debug("%s: closing with %s (%s) %s", self.label, close_code, cause, reason)
        self._close_args = (close_code, truncate_reason(reason))
        if self._byte_streams is not None:
            # The receive loop may be waiting for a slow reader: it must see the close.
            self._byte_streams.stop_waiting()
        self._enqueue(_CLOSE)
        self._close_task = asyncio.create_task(self._close_watchdog(), name=f"{self.label}-close")

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
        if self.close_cause is not None or self._finished or self._send_failed:
            return
        if self._writer_task is None:
            try:
                sent = self.transport.send_nowait(data)
            except Exception:
                logger.debug("%s: send failed; connection is gone", self.label)
                self._send_failed = True
                return
        else:
            sent = False
        if not sent:
            self._buffered += len(data)
            self._enqueue(data)
        if self.max_send_buffer is not None and self.send_buffer_size > self.max_send_buffer:
            logger.warning("%s: peer is not reading (send buffer full); dropping it", self.label)
            self._drop_slow_peer()

    def _enqueue(self, item: bytes | object) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        if self._writer_task is None:
            self._writer_task = asyncio.create_task(self._write_loop(), name=f"{self.label}-writer")

    @property
    def _low_water(self) -> int:
        return (self.max_send_buffer or 1 << 20) // 4

    @property
    def send_buffer_size(self) -> int:
        """Bytes queued here plus bytes the transport has not written yet."""
        return self._buffered + self.transport.buffered_amount()

    async def drain(self) -> None:
        """Wait until the send buffer is low again (byte-stream writers use this)."""
        while self._buffered > self._low_water and self.is_open:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        if not self.is_open:
            raise SrpcError(f"stream closed ({self.close_cause})")

    def _drop_slow_peer(self) -> None:
        self.close_cause = "timeout"
        if self._byte_streams is not None:
            self._byte_streams.stop_waiting()
        if self._queue is not None:
            self._queue.clear()
        self._buffered = 0
        self.transport.abort()

    async def _write_loop(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while queue:
                item = queue.popleft()
                if item is _CLOSE:
                    code, reason = self._close_args
                    with contextlib.suppress(Exception):
                        await self.transport.close(code, reason)
                    return
                assert isinstance(item, bytes)
                if not self._send_failed:
                    try:
                        await self.transport.send(item)
                    except Exception:
                        logger.debug("%s: send failed; connection is gone", self.label)
                        self._send_failed = True
                self._buffered -= len(item)
                if self._drained is not None and self._buffered <= self._low_water:
                    self._drained.set()
        finally:
            self._writer_task = None

    # --- events ----------------------------------------------------------------------

    async def _handle_event(self, event: Event) -> None:
        if isinstance(event, PingReceived):
            self._on_ping()
        elif isinstance(event, RequestReceived):
            self.start_request(event)
        elif isinstance(event, ReplyReceived):
            self._resolve(event)
        elif isinstance(event, ByteStreamReceived):
            await self.byte_streams.on_operation(event.operation)
        elif isinstance(event, ProtocolViolation):
            logger.info("%s: protocol violation: %s", self.label, event.reason)
            await self.close("badArg", event.reason)

    def stop_taking_requests(self) -> None:
        """Run no request received from now on (a draining server): the stream is about
        to close with 1012, and a call that was not run may then be sent again."""
        self._refusing = True

    def start_request(self, event: RequestReceived) -> None:
        """Run one incoming request in its own task (so a slow handler blocks nothing)."""
        if not self.is_open or self._refusing:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        # loop.create_task with the name: asyncio.create_task first has the task
        # format a default "Task-<n>" name, then replaces it (a third of the cost).
        task = loop.create_task(self._run_request(event), name=self._request_task_name)
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
            self._check_frame_size(frame, f"{call.prefix} response")
        except asyncio.CancelledError:
            self._tasks.pop(id(event), None)
            raise
        except SrpcError as exc:
            frame = self._failed_request(event, exc.message, user_error=exc.is_user_error)
        except Exception as exc:
            prefix = call.prefix if call is not None else event.member
            text = self._failure_text(exc, prefix)
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
        self.send(frame)

    def _failure_text(self, exc: BaseException, prefix: str | None) -> str:
        """Log a handler's failure; the error text its caller gets."""
        if self.expose_errors:
            logger.exception("%s: handler for %s failed", self.label, prefix)
            return f"{type(exc).__name__}: {exc}"
        # The exception may carry secrets (a DSN, a query): the caller gets an id
        # to quote, the log gets the details.
        error_id = secrets.token_hex(6)
        logger.exception("%s: handler for %s failed (error id %s)", self.label, prefix, error_id)
        return f"{INTERNAL_ERROR_TEXT} (error id {error_id})"

    def _check_frame_size(self, frame: bytes, what: str) -> None:
        # The peer would close the whole connection on it (4000 or 1009): fail only
        # this call, here.
        limit = self.peer_max_frame_size
        if limit is not None and len(frame) > limit:
            raise ValueError(
                f"{what} of {len(frame)} bytes exceeds the peer's max frame size ({limit})"
            )

    def _failed_request(self, event: RequestReceived, message: str, *, user_error: bool) -> bytes:
        # An upload the failed handler was reading is refused with it, so that its
        # writer stops and the receive loop never waits for that reader.
        if self._byte_streams is not None:
            self._byte_streams.release_owned(
                self._tasks.get(id(event)), f"request failed: {message}"
            )
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
            self._check_frame_size(frame, f"{prefix} request")
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
